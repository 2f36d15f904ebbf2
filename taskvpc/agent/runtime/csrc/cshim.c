/* taskvpc-cshim: the per-container supervisor of the runc runtime, in C.
 *
 * The same file contract as the Python shim (taskvpc/agent/runtime/shim.py, whose docstring is the
 * reference), for OCI runtimes only (the spec's ``initPidFile`` mode): about 0.1 MiB of memory per
 * container where a forked Python shim costs 1.35 MiB PSS. The runtime falls back to the Python shim
 * when this binary is absent (cshim.py).
 *
 * Run as ``taskvpc-cshim taskvpc-shim <container-dir> [<ready-fd>]`` (the tag and the directory on the
 * command line are how the agent, an agent after a restart and ``taskvpc down`` find it in /proc), in a
 * session of its own with stderr on ``<dir>/shim.err``: exec'd by a child of the shim server, else
 * spawned by the agent (cshim.py).
 *
 * Reads ``<dir>/spec.cshim``: NUL-terminated key and value strings, one after the other. Keys: ``arg``
 * (repeated: the OCI runtime's argv), ``env`` (repeated, ``K=V``), ``cwd``, ``log``, ``logMaxBytes``,
 * ``logMaxFiles``, ``initPidFile``, ``oomFile``, ``runtimeId``.
 *
 * Writes, atomically: ``pid`` (JSON: shimPid, shimStart, pid, start, startedAt, runtimeId),
 * ``exit_code`` (Docker's way: 128 + n for signal n), ``start_error`` (runc's last stderr line, else
 * why it could not run), ``oom`` (the cgroup's oom_kill count, when non-zero). Writes ``ok <pid>`` or
 * ``err <reason>`` to the ready fd. The container's output goes through a pipe into ``log``, rotated to
 * ``log.1`` ... ``log.<files-1>`` before ``log`` would pass ``logMaxBytes`` (without it, straight into
 * ``log``). SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 and SIGUSR2 are forwarded to the container's init;
 * signals that arrive before runc has said which pid that is stay blocked (pending) until then.
 *
 * One thread, no allocation after start-up beyond the spec: every signal comes through a signalfd, so
 * the only wait is one poll() on it and on the log pipe.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TAG "taskvpc-shim"
#define PUMP_CHUNK 16384 /* pages of it touched stay ours: kept small */

static const int forwarded[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};
#define N_FORWARDED (int)(sizeof(forwarded) / sizeof(forwarded[0]))

struct spec {
    char **argv;
    char **env;
    const char *cwd, *log, *init_pid_file, *oom_file, *runtime_id;
    long long log_max_bytes;
    int log_max_files;
};

static const char *dir;
static int ready_fd = -1;
static char buf[PUMP_CHUNK];

static void die(const char *what) {
    fprintf(stderr, "taskvpc-cshim %s: %s: %s\n", dir ? dir : "", what, strerror(errno));
    exit(1);
}

/* ------------------------------------------------------------------ files */

static void path_in(char *out, size_t size, const char *name) {
    if ((size_t)snprintf(out, size, "%s/%s", dir, name) >= size) {
        errno = ENAMETOOLONG;
        die(name);
    }
}

static int write_all(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ``<dir>/<name>`` holds ``text``, or (after a crash) nothing new: written aside, then renamed. */
static void write_atomic(const char *name, const char *text) {
    char path[4096], tmp[4200];
    path_in(path, sizeof path, name);
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die(tmp);
    if (write_all(fd, text, strlen(text)) < 0) die(tmp);
    close(fd);
    if (rename(tmp, path) < 0) die(path);
}

/* /proc/<pid>/stat read into data; returns its fields after the command name (from the state field
   on), NULL when there is no such process. The name is in parentheses and may hold spaces. */
static char *proc_stat_fields(int pid, char *data, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    ssize_t n = read(fd, data, size - 1);
    close(fd);
    if (n <= 0) return NULL;
    data[n] = 0;
    char *p = strrchr(data, ')');
    if (!p || !p[1] || !p[2]) return NULL;
    return p + 2;
}

/* Field 22 of /proc/<pid>/stat (start time in clock ticks), -1 when there is no such process. */
static long long proc_start_time(int pid) {
    char data[1024];
    char *p = proc_stat_fields(pid, data, sizeof data);
    if (!p) return -1;
    for (int field = 0; field < 19; field++) {
        p = strchr(p, ' ');
        if (!p) return -1;
        p++;
    }
    return strtoll(p, NULL, 10);
}

static int proc_ppid(int pid) {
    char data[1024];
    char *p = proc_stat_fields(pid, data, sizeof data);
    if (!p || !p[0] || !p[1]) return -1;
    return atoi(p + 2); /* "S ppid" */
}

static void load_spec(struct spec *spec) {
    char path[4096];
    path_in(path, sizeof path, "spec.cshim");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) die(path);
    char *data = malloc((size_t)st.st_size + 1);
    if (!data) die("malloc");
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
        if (n <= 0) die(path);
        got += (size_t)n;
    }
    close(fd);
    data[got] = 0;
    size_t strings = 0;
    for (size_t i = 0; i < got; i++) strings += data[i] == 0;
    spec->argv = calloc(strings + 1, sizeof(char *));
    spec->env = calloc(strings + 1, sizeof(char *));
    if (!spec->argv || !spec->env) die("calloc");
    size_t argc = 0, envc = 0;
    for (char *p = data; p < data + got;) {
        char *key = p;
        p += strlen(p) + 1;
        if (p >= data + got) break;
        char *value = p;
        p += strlen(p) + 1;
        if (!strcmp(key, "arg")) spec->argv[argc++] = value;
        else if (!strcmp(key, "env")) spec->env[envc++] = value;
        else if (!strcmp(key, "cwd")) spec->cwd = value;
        else if (!strcmp(key, "log")) spec->log = value;
        else if (!strcmp(key, "logMaxBytes")) spec->log_max_bytes = atoll(value);
        else if (!strcmp(key, "logMaxFiles")) spec->log_max_files = atoi(value);
        else if (!strcmp(key, "initPidFile")) spec->init_pid_file = value;
        else if (!strcmp(key, "oomFile")) spec->oom_file = value;
        else if (!strcmp(key, "runtimeId")) spec->runtime_id = value;
    }
    if (!argc || !spec->log || !spec->init_pid_file) {
        errno = EINVAL;
        die("spec.cshim needs arg, log and initPidFile");
    }
}

/* ------------------------------------------------------------------ the rotated log */

struct rotating_log {
    const char *path;
    long long max_bytes, size;
    int files, fd;
};

static int open_log(const char *path, int mode) {
    return open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_APPEND | mode, 0640);
}

static void log_rotate(struct rotating_log *log) {
    char from[4200], to[4200];
    close(log->fd);
    for (int index = log->files - 1; index > 0; index--) {
        if (index == 1) snprintf(from, sizeof from, "%s", log->path);
        else snprintf(from, sizeof from, "%s.%d", log->path, index - 1);
        snprintf(to, sizeof to, "%s.%d", log->path, index);
        rename(from, to); /* (ENOENT: not that many files yet) */
    }
    log->fd = open_log(log->path, O_TRUNC);
    log->size = 0;
}

static void log_write(struct rotating_log *log, const char *data, size_t len) {
    while (len && log->fd >= 0) {
        long long room = log->max_bytes - log->size;
        if (room <= 0) {
            log_rotate(log);
            continue;
        }
        size_t chunk = len < (size_t)room ? len : (size_t)room;
        ssize_t n = write(log->fd, data, chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; /* a full disk loses output, never the supervision */
        }
        log->size += n;
        data += n;
        len -= (size_t)n;
    }
}

/* ------------------------------------------------------------------ start */

static void lower(char *text) {
    for (; *text; text++) *text = (char)tolower((unsigned char)*text);
}

/* Docker's words for a command that could not be started (as shim.start_error). */
static void start_error_text(char *out, size_t size, const char *step, int err, const char *name,
                             const char *cwd) {
    char text[256];
    snprintf(text, sizeof text, "%s", strerror(err));
    lower(text);
    if (!strcmp(step, "chdir")) snprintf(out, size, "chdir to cwd ('%s') set in config.json failed: %s", cwd, text);
    else if (!strcmp(step, "exec") && err == ENOENT)
        snprintf(out, size, "exec: \"%s\": %s", name,
                 strchr(name, '/') ? "no such file or directory" : "executable file not found in $PATH");
    else if (!strcmp(step, "exec") && err == EACCES) snprintf(out, size, "exec: \"%s\": permission denied", name);
    else if (!strcmp(step, "exec")) snprintf(out, size, "exec: \"%s\": %s", name, text);
    else snprintf(out, size, "%s: %s", step, text);
}

static const char *env_path(char **env) {
    for (; *env; env++)
        if (!strncmp(*env, "PATH=", 5)) return *env + 5;
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

/* execve through the spec's own PATH (glibc's execvpe looks at ours). */
static void exec_path(char **argv, char **env) {
    const char *name = argv[0];
    if (strchr(name, '/')) {
        execve(name, argv, env);
        return;
    }
    int denied = 0;
    char candidate[4096];
    for (const char *p = env_path(env);;) {
        const char *end = strchrnul(p, ':');
        int len = (int)(end - p);
        snprintf(candidate, sizeof candidate, "%.*s/%s", len ? len : 1, len ? p : ".", name);
        execve(candidate, argv, env);
        if (errno == EACCES) denied = 1;
        else if (errno != ENOENT && errno != ENOTDIR) return; /* (ENOEXEC...: as shim._execvpe) */
        if (!*end) break;
        p = end + 1;
    }
    errno = denied ? EACCES : ENOENT;
}

static void close_from(int first, int keep) {
    if (keep >= first) {
        if (keep > first && syscall(SYS_close_range, first, keep - 1, 0) < 0)
            for (int fd = first; fd < keep; fd++) close(fd);
        first = keep + 1;
    }
    if (syscall(SYS_close_range, first, ~0U, 0) < 0)
        for (int fd = first; fd < 65536; fd++) close(fd);
}

/* fork + exec the OCI runtime in a process group of its own; its pid, or -1 with ``reason`` set. */
static int spawn(struct spec *spec, int log_fd, char *reason, size_t size) {
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) < 0) die("pipe2");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        const char *step = "setup";
        close(errpipe[0]);
        setpgid(0, 0);
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) goto failed;
        close_from(3, errpipe[1]);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGXFSZ, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        step = "chdir";
        if (spec->cwd && *spec->cwd && chdir(spec->cwd) < 0) goto failed;
        step = "exec";
        exec_path(spec->argv, spec->env);
    failed:;
        char message[64];
        int len = snprintf(message, sizeof message, "%s:%d", step, errno);
        (void)!write(errpipe[1], message, (size_t)len);
        _exit(127);
    }
    close(errpipe[1]);
    char message[64];
    ssize_t n;
    do n = read(errpipe[0], message, sizeof message - 1);
    while (n < 0 && errno == EINTR);
    close(errpipe[0]);
    if (n <= 0) return pid; /* the pipe closed on exec */
    message[n] = 0;
    waitpid(pid, NULL, 0);
    char *colon = strchr(message, ':');
    int err = colon ? atoi(colon + 1) : 0;
    if (colon) *colon = 0;
    start_error_text(reason, size, message, err, spec->argv[0], spec->cwd ? spec->cwd : "");
    return -1;
}

/* Wait for ``runc run -d``: the container's init pid, or -1 with the runtime's error in ``reason``. */
static int await_oci_runtime(int pid, struct spec *spec, int pump_fd, char *reason, size_t size) {
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            status = 255 << 8;
            break;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        FILE *file = fopen(spec->init_pid_file, "re");
        int init = 0;
        if (!file) {
            snprintf(reason, size, "no init pid from the OCI runtime: [Errno %d] %s: '%s'", errno, strerror(errno),
                     spec->init_pid_file);
            return -1;
        }
        if (fscanf(file, "%d", &init) != 1 || init <= 0) {
            fclose(file);
            snprintf(reason, size, "no init pid from the OCI runtime: %s holds no pid", spec->init_pid_file);
            return -1;
        }
        fclose(file);
        return init;
    }
    ssize_t n = 0;
    if (pump_fd >= 0) { /* the runtime's stderr: nothing of it has been copied to the log yet */
        fcntl(pump_fd, F_SETFL, O_NONBLOCK);
        n = read(pump_fd, buf, sizeof buf - 1);
    }
    buf[n > 0 ? n : 0] = 0;
    char *last = NULL;
    for (char *line = strtok(buf, "\r\n"); line; line = strtok(NULL, "\r\n")) {
        while (isspace((unsigned char)*line)) line++;
        char *end = line + strlen(line);
        while (end > line && isspace((unsigned char)end[-1])) *--end = 0;
        if (*line) last = line;
    }
    if (last) snprintf(reason, size, "%s", last);
    else if (WIFSIGNALED(status))
        snprintf(reason, size, "the OCI runtime was killed by signal %d and wrote nothing to stderr",
                 WTERMSIG(status));
    else
        snprintf(reason, size, "the OCI runtime exited with code %d and wrote nothing to stderr",
                 WEXITSTATUS(status));
    return -1;
}

static void ready(const char *message) {
    if (ready_fd < 0) return;
    (void)!write(ready_fd, message, strlen(message));
    close(ready_fd);
    ready_fd = -1;
}

/* ------------------------------------------------------------------ the end */

/* SIGKILL every process whose parent is us: descendants reparented to us (a child subreaper). */
static void kill_strays(int own_pid) {
    DIR *proc = opendir("/proc");
    if (!proc) return;
    struct dirent *entry;
    while ((entry = readdir(proc))) {
        if (!isdigit((unsigned char)entry->d_name[0])) continue;
        int pid = atoi(entry->d_name);
        if (proc_ppid(pid) == own_pid) kill(pid, SIGKILL);
    }
    closedir(proc);
}

static double monotonic(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* Reap every remaining child, killing strays, until we have none. */
static void reap_all(int own_pid) {
    double next_scan = 0;
    for (;;) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        if (pid < 0 && errno == ECHILD) return;
        if (pid > 0) continue;
        double now = monotonic();
        if (now >= next_scan) {
            kill_strays(own_pid);
            next_scan = now + 0.1;
        }
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
}

static long long oom_kills(const char *path) {
    FILE *file = fopen(path, "re");
    if (!file) return 0;
    char line[256];
    long long kills = 0;
    while (fgets(line, sizeof line, file))
        if (!strncmp(line, "oom_kill ", 9)) kills = atoll(line + 9);
    fclose(file);
    return kills;
}

/* Forward signals and copy output until ``init`` has ended and the pipe is closed (or one second
 * after the end, should something still hold it); the wait status of ``init``. */
static int supervise(int init, int signals, int pump_fd, struct rotating_log *log) {
    int status = 0, ended = 0;
    double deadline = 0;
    for (;;) {
        if (!ended) {
            pid_t done = waitpid(init, &status, WNOHANG);
            if (done == init || (done < 0 && errno == ECHILD)) {
                if (done < 0) status = 255 << 8;
                ended = 1;
                deadline = monotonic() + 1.0;
            }
        }
        if (ended && (pump_fd < 0 || monotonic() >= deadline)) return status;
        struct pollfd fds[2] = {{signals, POLLIN, 0}, {pump_fd, POLLIN, 0}};
        double left = deadline - monotonic(); /* (never negative: poll would wait forever) */
        int timeout = !ended ? -1 : left > 0 ? (int)(left * 1000) + 1 : 0;
        if (poll(fds, pump_fd >= 0 ? 2 : 1, timeout) < 0 && errno != EINTR) die("poll");
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo info[8];
            ssize_t n = read(signals, info, sizeof info);
            for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof info[0]; i++)
                if (info[i].ssi_signo != SIGCHLD && !ended) kill(init, (int)info[i].ssi_signo);
        }
        if (pump_fd >= 0 && fds[1].revents) {
            ssize_t n = read(pump_fd, buf, sizeof buf);
            if (n > 0) log_write(log, buf, (size_t)n);
            else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(pump_fd);
                pump_fd = -1;
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4 || strcmp(argv[1], TAG)) {
        fprintf(stderr, "usage: taskvpc-cshim " TAG " CONTAINER_DIR [READY_FD]\n");
        return 2;
    }
    dir = argv[2];
    ready_fd = argc == 4 ? atoi(argv[3]) : -1;
    struct spec spec = {0};
    load_spec(&spec);
    int own_pid = getpid();
    long long own_start = proc_start_time(own_pid);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    for (int i = 0; i < N_FORWARDED; i++) sigaddset(&mask, forwarded[i]);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int signals = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signals < 0) die("signalfd");
    signal(SIGPIPE, SIG_IGN); /* a closed ready pipe or log reader is an error return, not our end */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

    int pump_fd = -1, log_fd;
    if (spec.log_max_bytes > 0) {
        int pipe_fds[2];
        if (pipe2(pipe_fds, O_CLOEXEC) < 0) die("pipe2");
        pump_fd = pipe_fds[0];
        log_fd = pipe_fds[1];
    } else {
        log_fd = open_log(spec.log, 0);
        if (log_fd < 0) die(spec.log);
    }
    char reason[4096], text[4200];
    int pid = spawn(&spec, log_fd, reason, sizeof reason);
    close(log_fd);
    int init = pid < 0 ? -1 : await_oci_runtime(pid, &spec, pump_fd, reason, sizeof reason);
    if (init < 0) {
        snprintf(text, sizeof text, "%s\n", reason);
        write_atomic("start_error", text);
        snprintf(text, sizeof text, "err %s\n", reason);
        ready(text);
        reap_all(own_pid);
        return 0;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long start = proc_start_time(init);
    char own_start_text[32], start_text[32];
    snprintf(own_start_text, sizeof own_start_text, own_start < 0 ? "null" : "%lld", own_start);
    snprintf(start_text, sizeof start_text, start < 0 ? "null" : "%lld", start);
    snprintf(text, sizeof text,
             "{\"shimPid\": %d, \"shimStart\": %s, \"pid\": %d, \"start\": %s, \"startedAt\": %lld.%06ld, "
             "\"runtimeId\": \"%s\"}",
             own_pid, own_start_text, init, start_text, (long long)now.tv_sec, now.tv_nsec / 1000,
             spec.runtime_id ? spec.runtime_id : "");
    write_atomic("pid", text);
    snprintf(text, sizeof text, "ok %d\n", init);
    ready(text);

    struct rotating_log log = {spec.log, spec.log_max_bytes, 0, spec.log_max_files > 0 ? spec.log_max_files : 1, -1};
    if (pump_fd >= 0) {
        fcntl(pump_fd, F_SETFL, O_NONBLOCK);
        log.fd = open_log(spec.log, 0);
        struct stat st;
        log.size = log.fd >= 0 && fstat(log.fd, &st) == 0 ? st.st_size : 0;
    }
    int status = supervise(init, signals, pump_fd, &log);
    if (log.fd >= 0) close(log.fd);
    int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    reap_all(own_pid); /* (the container's processes all ended with its PID namespace) */
    long long kills = spec.oom_file ? oom_kills(spec.oom_file) : 0;
    if (kills > 0) {
        snprintf(text, sizeof text, "%lld\n", kills);
        write_atomic("oom", text);
    }
    snprintf(text, sizeof text, "%d\n", code);
    write_atomic("exit_code", text);
    return 0;
}
