/*
 * devagent-run: runs one command for devagent inside a thread's container and makes sure nothing
 * of it outlives it.
 *
 *   devagent-run shell UID GID TIMEOUT COMMAND    COMMAND exactly as given, via /bin/bash -c
 *   devagent-run argv UID GID TIMEOUT PROG ARG...  one of devagent's own helpers (PROG is looked up
 *                                                  in the system directories only)
 *   devagent-run stop                              stop every process but PID 1
 *
 * It runs as root in the container (whose only capabilities are KILL, SETUID and SETGID) and the
 * command runs as the sandbox user UID:GID with no capabilities and no supplementary groups, so
 * the command can neither signal nor trace this program or PID 1. Before the command starts,
 * everything but PID 1 is stopped (one command at a time: a command still running for a devagent
 * that died is ended first); TIMEOUT seconds after, this program kills the command even if nobody
 * on the host is waiting any more; after it returns, every process but PID 1 is killed (kill(-1)
 * is atomic, so a forking process cannot slip out) and the sandbox user's are waited for. Exit
 * status is the command's (128 + the signal's number when a signal ended it, as a shell reports).
 *
 * One static program, so that a command costs one exec of devagent's own before bash: no shell
 * script, no setpriv, no timer process. It loads no library and reads no file but /proc's and
 * the cgroup's, so nothing the sandbox user can write changes what it does; after a fork bomb it
 * still cleans up, as it forks nothing to do so.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>

#define SYSTEM_PATH "/usr/sbin:/usr/bin:/sbin:/bin"
#define NO_UID ((long)-1)

static void usage(void) {
    fputs("usage: devagent-run shell|argv UID GID TIMEOUT COMMAND... | devagent-run stop\n", stderr);
    exit(2);
}

/* A positive decimal id, as devagent passes it; 0 (root) and anything else is refused. */
static long parse_id(const char *text) {
    long value = 0;
    if (*text == '\0' || strlen(text) > 9) return 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        value = value * 10 + (*p - '0');
    }
    return value;
}

/* Seconds as devagent passes them ("300.000"): digits and at most one dot. */
static int parse_seconds(const char *text, double *seconds) {
    int dots = 0, digits = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '.') dots++;
        else if (*p >= '0' && *p <= '9') digits++;
        else return 0;
    }
    if (digits == 0 || dots > 1) return 0;
    *seconds = strtod(text, NULL);
    return 1;
}

/* Reads /proc/PID/status: whether the process runs anything (not a zombie) and, when `uid` is
 * given, whether its real, effective or saved uid is `uid`. */
static int counts(const char *pid, long uid) {
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%s/status", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0; /* gone meanwhile */
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    const char *state = strstr(buf, "\nState:\t");
    if (state == NULL || state[8] == 'Z' || state[8] == 'X') return 0;
    if (uid == NO_UID) return 1;
    const char *line = strstr(buf, "\nUid:\t");
    long real, effective, saved;
    if (line == NULL || sscanf(line + 6, "%ld %ld %ld", &real, &effective, &saved) != 3) return 0;
    return real == uid || effective == uid || saved == uid;
}

/* How many processes other than PID 1 and this one are alive (zombies run nothing); with `uid`,
 * only those of that uid. With `kill_them`, each of them is sent SIGKILL on the way. */
static int processes(long uid, int kill_them) {
    DIR *proc = opendir("/proc");
    if (proc == NULL) return 0;
    pid_t self = getpid();
    int found = 0;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        const char *name = entry->d_name;
        if (name[0] < '1' || name[0] > '9') continue;
        pid_t pid = (pid_t)atol(name);
        if (pid == 1 || pid == self || !counts(name, uid)) continue;
        found++;
        if (kill_them) kill(pid, SIGKILL);
    }
    closedir(proc);
    return found;
}

/* Every process but PID 1 and this one, killed at once; returns when those of `uid` (every one
 * without) are gone, killed again each round in case one was started from outside meanwhile.
 * kill(-1) fails only when there is no other process at all: then there is nothing to wait for. */
static void stop_all(long uid) {
    if (kill(-1, SIGKILL) != 0) return;
    while (processes(uid, 0) > 0) {
        sched_yield();
        kill(-1, SIGKILL);
    }
}

/* The container's OOM-kill counter (cgroup v2, else v1); 0 when unreadable. */
static long oom_kills(void) {
    static const char *files[] = {"/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char buf[1024];
        int fd = open(files[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        for (char *line = buf; line != NULL; line = strchr(line, '\n')) {
            if (*line == '\n') line++;
            if (strncmp(line, "oom_kill ", 9) == 0) return atol(line + 9);
        }
    }
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* In the child: become UID:GID with no groups (which also ends every capability: the kernel
 * clears them when all uids leave 0), then run the command. Never returns. */
static void run_as(uid_t uid, gid_t gid, int shell, char **args, const sigset_t *mask) {
    if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
        fprintf(stderr, "devagent-run: cannot become %u:%u: %s\n", (unsigned)uid, (unsigned)gid, strerror(errno));
        _exit(126);
    }
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) != 0 || r != uid || e != uid || s != uid) _exit(126);
    sigprocmask(SIG_SETMASK, mask, NULL);
    if (shell) {
        char *argv[] = {"/bin/bash", "-c", args[0], NULL};
        execv(argv[0], argv);
    } else {
        /* devagent's helpers see the system directories only, and are looked up there only. */
        setenv("PATH", SYSTEM_PATH, 1);
        execvp(args[0], args);
    }
    int err = errno;
    fprintf(stderr, "devagent-run: cannot run %s: %s\n", shell ? "/bin/bash" : args[0], strerror(err));
    _exit(err == ENOENT ? 127 : 126);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    int shell = strcmp(argv[1], "shell") == 0;
    if (strcmp(argv[1], "stop") == 0) {
        stop_all(NO_UID);
        return 0;
    }
    if (!shell && strcmp(argv[1], "argv") != 0) usage();
    if (argc < 6) usage();
    long uid = parse_id(argv[2]), gid = parse_id(argv[3]);
    double timeout;
    if (uid == 0) { fprintf(stderr, "devagent-run: refusing uid '%s'\n", argv[2]); return 2; }
    if (gid == 0) { fprintf(stderr, "devagent-run: refusing gid '%s'\n", argv[3]); return 2; }
    if (!parse_seconds(argv[4], &timeout)) { fprintf(stderr, "devagent-run: bad timeout '%s'\n", argv[4]); return 2; }

    stop_all(NO_UID);
    long oom_before = oom_kills();

    /* SIGCHLD stays blocked here and is waited for with a deadline: the timer needs no process. */
    sigset_t chld, previous;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &previous);
    fflush(NULL);
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "devagent-run: cannot start the command: %s\n", strerror(errno));
        return 126;
    }
    if (child == 0) run_as((uid_t)uid, (gid_t)gid, shell, argv + 5, &previous);

    double deadline = now() + timeout;
    int status = 0, timed_out = 0;
    for (;;) {
        pid_t done = waitpid(child, &status, timed_out ? 0 : WNOHANG);
        if (done == child) break;
        if (done < 0 && errno != EINTR) { status = 0; break; }
        if (timed_out) continue;
        double left = deadline - now();
        if (left <= 0) {
            /* Time is up: the command and every process of its user, whatever it started. */
            timed_out = 1;
            kill(child, SIGKILL);
            processes(uid, 1);
            continue;
        }
        struct timespec wait = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        sigtimedwait(&chld, NULL, &wait);
    }
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;

    int left = processes(uid, 0);
    /* Everything but PID 1 and this program, at once; then only the sandbox user's processes are
     * waited for (root's need no waiting for). */
    stop_all(uid);
    if (left > 0) fprintf(stderr, "[devagent] stopped %d process(es) the command left running\n", left);
    long oom_after = oom_kills();
    if (oom_after > oom_before)
        fprintf(stderr, "[devagent] out of memory: the sandbox's memory limit was hit and the kernel killed "
                        "%ld process(es) of this command\n", oom_after - oom_before);
    return rc;
}
