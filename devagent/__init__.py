"""devagent: a sandboxed DevOps agent whose shell commands and migrations wait for exact approval."""

__version__ = "0.1.0"
