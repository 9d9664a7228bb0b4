"""The sandbox settings of the config file reach the container: variables by name, extra CA
certificates, nothing else of the host's environment."""

from __future__ import annotations

import http.server
import ipaddress
import json
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from llm_stub import tool_call

pytestmark = pytest.mark.usefixtures("sandbox_image")


def run_command(cli, llm, command: str, *flags: str, env: dict[str, str]) -> str:
    """One approved command in a new thread; what the model was told it printed."""
    llm.script({"tool_calls": [tool_call("run_shell", {"command": command}, "s1")]}, {"content": "ok"})
    paused = cli("task", "go", "--base-url", llm.url, "--model", "stub", "--no-input", "--json", *flags, env=env)
    assert paused.returncode == 3, paused.stderr
    thread = json.loads(paused.stdout.splitlines()[-1])["thread"]
    assert cli("approve", thread, "--all", env=env).returncode == 0
    assert cli("resume", thread, "--no-input", env=env).returncode == 0
    return llm.tool_outputs()["s1"]


def test_variables_named_in_the_config_are_passed_and_nothing_else(cli, llm, tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "devagent").mkdir(parents=True)
    (xdg / "devagent" / "config.toml").write_text('[sandbox]\nenv = ["REGISTRY_URL"]\n')
    env = {"XDG_CONFIG_HOME": str(xdg), "REGISTRY_URL": "https://registry.example/simple",
           "UNNAMED_SECRET": "s3cr3t"}
    out = run_command(cli, llm, "env", env=env)
    assert "REGISTRY_URL=https://registry.example/simple" in out
    assert "s3cr3t" not in out and "sk-test-secret-key" not in out


def make_ca_and_server_cert(d: Path, ip: str) -> tuple[Path, Path, Path]:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=devagent test CA",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}", "-keyout", "server.key", "-out", "server.csr")
    (d / "san.ext").write_text(f"subjectAltName=IP:{ip}\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return d / "ca.pem", d / "server.pem", d / "server.key"


def test_an_https_server_signed_by_an_extra_ca_is_trusted_only_with_ca_certificates(cli, llm, docker_client,
                                                                                     tmp_path: Path) -> None:
    # The host as a --network sandbox sees it: the default bridge's gateway.
    ipam = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    gateway = ipam.get("Gateway") or str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))
    ca, cert, key = make_ca_and_server_cert(tmp_path, gateway)

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello through TLS")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((gateway, 0), Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://{gateway}:{server.server_address[1]}/"
    fetch = f"python3 -c 'import urllib.request; print(urllib.request.urlopen(\"{url}\", timeout=10).read().decode())'"
    try:
        xdg = tmp_path / "xdg"
        (xdg / "devagent").mkdir(parents=True)
        config = xdg / "devagent" / "config.toml"
        env = {"XDG_CONFIG_HOME": str(xdg)}

        without = run_command(cli, llm, fetch, "--network", env=env)
        assert "CERTIFICATE_VERIFY_FAILED" in without

        config.write_text(f'[sandbox]\nca_certificates = ["{ca}"]\n')
        trusted = run_command(cli, llm, fetch, "--network", env=env)
        assert "hello through TLS" in trusted, trusted
    finally:
        server.shutdown()
