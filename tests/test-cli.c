/* test-cli.c — the built sbx, as an admin runs it, against a private real
 * sandboxd (tests/daemonlib): output and exit statuses, --json and -q,
 * SANDBOX resolution, errors as one line, cp both ways, logs and events,
 * volumes and secrets, images (built, run, listed, deleted) and snapshots,
 * stdin, signals, a daemon restart in the middle, and -t on a real pty
 * (raw mode on, window size forwarded, the terminal restored however the
 * session ends). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "daemonlib.h"

static const char *sbx_path;
/* SANDBOXD_TOKEN for the sbx started next, NULL for none. */
static const char *child_token;

/* Execs sbx with argv (without "sbx"), under $SBX_TEST_WRAPPER when set
 * (words split at spaces: `valgrind -q --error-exitcode=99 ...`). */
static void exec_sbx(const char *const *argv)
{
    const char *wrapper = getenv("SBX_TEST_WRAPPER");
    const char *args[256];
    char *copy = wrapper ? strdup(wrapper) : NULL, *save = NULL, *w;
    size_t n = 0;

    for (w = copy ? strtok_r(copy, " ", &save) : NULL; w && n < 64; w = strtok_r(NULL, " ", &save))
        args[n++] = w;
    args[n++] = sbx_path;
    for (; *argv && n < 255; argv++)
        args[n++] = *argv;
    args[n] = NULL;
    execv(args[0], (char **)args);
    _exit(127);
}

/* ---- sbx as a child with pipes ---- */

struct proc {
    pid_t pid;
    int in, out, err; /* our ends; -1 once closed */
    const char *input;
    size_t input_len, input_off;
    struct dl_buf o, e;
    int status; /* exit status, 128+N for signal N; -1 while running */
};

static void append(struct dl_buf *b, const char *p, size_t n)
{
    char *nd = realloc(b->data, b->len + n + 1);

    ck_assert_ptr_nonnull(nd);
    b->data = nd;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* Starts sbx with argv (NULL-terminated, without "sbx"), its stdin fed from
 * input (NULL: stdin closed at once), SANDBOXD_HOST the test's daemon. */
static void proc_start(struct proc *p, const char *input, size_t input_len, const char *const *argv)
{
    int pin[2], pout[2], perr[2];

    ck_assert_int_eq(pipe2(pin, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(pout, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(perr, O_CLOEXEC), 0);
    *p = (struct proc){.input = input, .input_len = input_len, .status = -1};
    p->pid = fork();
    ck_assert_int_ge(p->pid, 0);
    if (p->pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        setenv("SANDBOXD_HOST", dl_sock, 1);
        if (child_token)
            setenv("SANDBOXD_TOKEN", child_token, 1);
        else
            unsetenv("SANDBOXD_TOKEN");
        exec_sbx(argv);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    p->in = pin[1];
    p->out = pout[0];
    p->err = perr[0];
    fcntl(p->in, F_SETFL, O_NONBLOCK);
    if (!input) {
        close(p->in);
        p->in = -1;
    }
}

/* Moves data for up to timeout_ms; returns once `until` (if not NULL) is in
 * the child's stdout, or when it has exited and its pipes are drained. */
static bool proc_pump(struct proc *p, const char *until, int timeout_ms)
{
    double end = dl_now_ms() + timeout_ms;

    for (;;) {
        struct pollfd fds[3];
        int n = 0, st;
        char buf[65536];

        if (until && p->o.data && strstr(p->o.data, until))
            return true;
        if (p->out < 0 && p->err < 0) {
            if (p->status < 0 && waitpid(p->pid, &st, 0) == p->pid)
                p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return !until;
        }
        if (dl_now_ms() > end)
            return false;
        if (p->out >= 0)
            fds[n++] = (struct pollfd){.fd = p->out, .events = POLLIN};
        if (p->err >= 0)
            fds[n++] = (struct pollfd){.fd = p->err, .events = POLLIN};
        if (p->in >= 0)
            fds[n++] = (struct pollfd){.fd = p->in, .events = POLLOUT};
        poll(fds, (nfds_t)n, 100);
        for (int i = 0; i < n; i++) {
            if (!fds[i].revents)
                continue;
            if (fds[i].fd == p->in) {
                ssize_t w = write(p->in, p->input + p->input_off, p->input_len - p->input_off);
                if (w > 0)
                    p->input_off += (size_t)w;
                if ((w < 0 && errno != EAGAIN) || p->input_off == p->input_len) {
                    close(p->in);
                    p->in = -1;
                }
                continue;
            }
            ssize_t r = read(fds[i].fd, buf, sizeof(buf));
            if (r > 0) {
                append(fds[i].fd == p->out ? &p->o : &p->e, buf, (size_t)r);
            } else if (r == 0 || errno != EINTR) {
                close(fds[i].fd);
                if (fds[i].fd == p->out)
                    p->out = -1;
                else
                    p->err = -1;
            }
        }
    }
}

/* Waits (up to timeout_s) for the end; returns the exit status. */
static int proc_finish(struct proc *p, int timeout_s)
{
    if (!proc_pump(p, NULL, timeout_s * 1000)) {
        kill(p->pid, SIGKILL);
        proc_pump(p, NULL, 10000);
        ck_abort_msg("sbx did not end within %d s; stdout [%s] stderr [%s]", timeout_s,
                     p->o.data ? p->o.data : "", p->e.data ? p->e.data : "");
    }
    if (p->in >= 0)
        close(p->in);
    if (!p->o.data)
        p->o.data = strdup("");
    if (!p->e.data)
        p->e.data = strdup("");
    return p->status;
}

static void proc_free(struct proc *p)
{
    free(p->o.data);
    free(p->e.data);
}

/* sbx ARGS... with stdin from input; the finished proc. */
static struct proc sbx_v(const char *input, size_t len, const char *const *argv)
{
    struct proc p;

    proc_start(&p, input, len, argv);
    proc_finish(&p, 100);
    return p;
}
#define SBX(...)        sbx_v(NULL, 0, (const char *const[]){__VA_ARGS__, NULL})
#define SBX_IN(in, ...) sbx_v(in, strlen(in), (const char *const[]){__VA_ARGS__, NULL})

static size_t count_lines(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* An error: the status, nothing on stdout, one line on stderr that starts
 * "sbx" and contains `what`. */
static void assert_error(struct proc *p, int status, const char *what)
{
    ck_assert_msg(p->status == status, "status %d, want %d; stderr [%s]", p->status, status,
                  p->e.data);
    ck_assert_msg(count_lines(p->e.data) == 1 && !strncmp(p->e.data, "sbx", 3),
                  "stderr is not one sbx line: [%s]", p->e.data);
    ck_assert_msg(strstr(p->e.data, what), "stderr [%s] lacks [%s]", p->e.data, what);
}

/* Expects status 0 and returns stdout (free it). */
static char *ok(struct proc p)
{
    ck_assert_msg(p.status == 0, "sbx failed with %d: stderr [%s] stdout [%s]", p.status, p.e.data,
                  p.o.data);
    free(p.e.data);
    return p.o.data;
}

/* `sbx run -d` of a busybox sandbox with extra arguments; its id. */
static char *run_detached(const char *const *extra)
{
    const char *argv[32] = {"run", "-d", "--image", "busybox"};
    size_t n = 4;
    char *out, *nl;

    for (; extra && *extra; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    out = ok(sbx_v(NULL, 0, argv));
    nl = strchr(out, '\n');
    ck_assert_ptr_nonnull(nl);
    *nl = '\0';
    ck_assert_msg(strlen(out) == 25 && !strncmp(out, "sb-", 3), "not an id: [%s]", out);
    return out;
}
#define RUN_D(...) run_detached((const char *const[]){__VA_ARGS__, NULL})

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);

    ck_assert_msg(j != NULL, "not JSON (%s): [%s]", e.text, text);
    return j;
}

/* ---- commands, options, errors ---- */

START_TEST(test_help_and_usage_errors)
{
    static const char *const cmds[] = {
        "run", "exec",   "shell", "ps",  "inspect", "logs",   "wait",   "terminate", "rm",
        "cp",  "events", "stats", "tag", "info",    "volume", "secret", "image",     "snapshot"};
    struct proc p;
    char *out;

    out = ok(SBX("--help"));
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        ck_assert_msg(strstr(out, cmds[i]), "sbx --help does not list %s", cmds[i]);
    free(out);
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        char want[64];
        out = ok(SBX(cmds[i], "--help"));
        snprintf(want, sizeof(want), "usage: sbx %s", cmds[i]);
        ck_assert_msg(!strncmp(out, want, strlen(want)), "sbx %s --help: [%s]", cmds[i], out);
        free(out);
    }
    out = ok(SBX("--version"));
    ck_assert_msg(!strncmp(out, "sbx ", 4), "%s", out);
    free(out);

    p = SBX("frobnicate");
    assert_error(&p, 2, "no command `frobnicate`");
    proc_free(&p);
    p = SBX("ps", "--bogus");
    assert_error(&p, 2, "--bogus");
    proc_free(&p);
    p = SBX("run", "--memory", "lots", "--", "true");
    assert_error(&p, 125, "--memory");
    proc_free(&p);
    p = SBX("exec");
    assert_error(&p, 125, "no SANDBOX");
    proc_free(&p);
    p = SBX("cp", "a", "b");
    assert_error(&p, 2, "SANDBOX:PATH");
    proc_free(&p);
}
END_TEST

START_TEST(test_host_errors_and_info)
{
    struct proc p;
    json_t *j;
    char *out;

    p = SBX("--host", "/nonexistent/sandboxd.sock", "ps");
    assert_error(&p, 1, "cannot connect to sandboxd at /nonexistent/sandboxd.sock");
    proc_free(&p);
    p = SBX("ps", "--host", "tcp://127.0.0.1:1");
    assert_error(&p, 1, "cannot connect to sandboxd at tcp://127.0.0.1:1");
    proc_free(&p);
    p = SBX("--host", "tcp://nowhere", "info");
    assert_error(&p, 1, "tcp://HOST:PORT");
    proc_free(&p);
    p = SBX("--host", "/nonexistent/sandboxd.sock", "run", "--", "true");
    assert_error(&p, 125, "cannot connect");
    proc_free(&p);

    out = ok(SBX("info"));
    ck_assert_msg(strstr(out, "Version:") && strstr(out, "Cgroup mode:") && strstr(out, dl_sock),
                  "%s", out);
    free(out);
    out = ok(SBX("info", "--json"));
    j = parse(out);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "version")));
    ck_assert(json_is_object(json_object_get(j, "limits")));
    {
        /* The certificate of tls tunnels: its fingerprint in the table,
         * its text alone with --certificate. */
        const char *fp = json_string_value(json_object_get(json_object_get(j, "tls"), "sha256"));
        const char *pem =
            json_string_value(json_object_get(json_object_get(j, "tls"), "certificate"));
        char *info = ok(SBX("info")), *cert = ok(SBX("info", "--certificate"));
        ck_assert_ptr_nonnull(fp);
        ck_assert_msg(strstr(info, "TLS tunnels:") && strstr(info, fp), "%s", info);
        ck_assert_str_eq(cert, pem);
        free(info);
        free(cert);
    }
    json_decref(j);
    free(out);
}
END_TEST

/* A daemon on TCP with a bearer token, beside the test's own: sbx sends
 * SANDBOXD_TOKEN and says when it is missing or wrong. */
START_TEST(test_tcp_and_token)
{
    char tokens[256], sock[256], state[256], run[256], host[64], cgparent[96];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), st;
    pid_t pid;
    struct proc p;
    char *out;
    FILE *f;

    /* A free port, given back just before the daemon takes it. */
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    snprintf(host, sizeof(host), "tcp://127.0.0.1:%d", ntohs(sa.sin_port));
    snprintf(tokens, sizeof(tokens), "%s/tokens", dl_dir);
    snprintf(sock, sizeof(sock), "%s/tcp.sock", dl_dir);
    snprintf(state, sizeof(state), "%s/tcp-state", dl_dir);
    snprintf(run, sizeof(run), "%s/tcp-run", dl_dir);
    snprintf(cgparent, sizeof(cgparent), "%s-tcp", dl_cgparent);
    f = fopen(tokens, "we");
    ck_assert_ptr_nonnull(f);
    fputs("s3cret-token-for-sbx\n", f);
    fclose(f);
    chmod(tokens, 0600);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char listen[64];
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", ntohs(sa.sin_port));
        execl(getenv("SBX_DAEMON") ? getenv("SBX_DAEMON") : "./sandboxd", "sandboxd", "--socket",
              sock, "--state-dir", state, "--run-dir", run, "--listen", listen, "--tokens", tokens,
              "--cgroup-parent", cgparent, "--bridge", dl_bridge, "--subnet", dl_subnet,
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && access(sock, F_OK) < 0; i++) {
        ck_assert_msg(waitpid(pid, &st, WNOHANG) == 0, "the TCP daemon did not start");
        usleep(10000);
    }
    p = SBX("--host", host, "ps");
    assert_error(&p, 1, "(set SANDBOXD_TOKEN)");
    proc_free(&p);
    child_token = "wrong";
    p = SBX("--host", host, "ps");
    assert_error(&p, 1, "token");
    proc_free(&p);
    child_token = "s3cret-token-for-sbx";
    out = ok(SBX("--host", host, "info"));
    ck_assert_msg(strstr(out, host), "%s", out);
    free(out);
    out = ok(SBX("ps", "-q", "--host", host));
    ck_assert_str_eq(out, "");
    free(out);
    child_token = NULL;
    kill(pid, SIGTERM);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
}
END_TEST

/* ---- run ---- */

START_TEST(test_run_output_and_returncodes)
{
    struct proc p;

    p = SBX("run", "--image", "busybox", "--", "echo", "hello");
    ck_assert_int_eq(p.status, 0);
    ck_assert_str_eq(p.o.data, "hello\n");
    ck_assert_str_eq(p.e.data, "");
    proc_free(&p);
    /* stdout and stderr to the right streams, the returncode passed on. */
    p = SBX("run", "--image", "busybox", "--", "sh", "-c", "echo out; echo err >&2; exit 7");
    ck_assert_int_eq(p.status, 7);
    ck_assert_str_eq(p.o.data, "out\n");
    ck_assert_str_eq(p.e.data, "err\n");
    proc_free(&p);
    p = SBX("run", "--image", "busybox", "--", "sh", "-c", "kill -TERM $$");
    ck_assert_int_eq(p.status, 143);
    proc_free(&p);
    /* Options reach the sandbox. */
    p = SBX("run", "--image", "busybox", "--env", "FOO=bar", "-e", "BAZ=1", "--workdir", "/tmp",
            "--hostname", "box", "--", "sh", "-c", "echo $FOO $BAZ $(pwd) $(hostname)");
    ck_assert_int_eq(p.status, 0);
    ck_assert_str_eq(p.o.data, "bar 1 /tmp box\n");
    proc_free(&p);
    /* Without -i the command's stdin is empty; with -i it is ours. */
    p = SBX_IN("ignored\n", "run", "--image", "busybox", "--", "cat");
    ck_assert_int_eq(p.status, 0);
    ck_assert_str_eq(p.o.data, "");
    proc_free(&p);
    p = SBX_IN("abc\ndef\n", "run", "-i", "--image", "busybox", "--", "cat");
    ck_assert_int_eq(p.status, 0);
    ck_assert_str_eq(p.o.data, "abc\ndef\n");
    proc_free(&p);
    /* A command that is not there: 127 and the reason, like docker run. */
    p = SBX("run", "--image", "busybox", "--", "/no/such/program");
    assert_error(&p, 127, "No such file or directory");
    proc_free(&p);
    p = SBX("run", "--image", "no-such-image", "--", "true");
    assert_error(&p, 125, "no-such-image");
    proc_free(&p);
    /* The daemon's own validation, quoted. */
    p = SBX("run", "--image", "busybox", "--memory", "1", "--", "true");
    assert_error(&p, 125, "memory_mib");
    proc_free(&p);
    /* An image without an entrypoint and no CMD: said so, nothing left. */
    p = SBX("run", "--image", "busybox");
    assert_error(&p, 125, "no command");
    proc_free(&p);
}
END_TEST

START_TEST(test_run_stdin_large)
{
    /* More than the monitor queues for one process (16 MiB) while the
     * reader sleeps: sbx must retry its refused batches, in order. */
    size_t len = 24u << 20;
    char *data = malloc(len), want[64];
    struct proc p;

    ck_assert_ptr_nonnull(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)('a' + (i * 7 + i / 4093) % 26);
    p = sbx_v(data, len,
              (const char *const[]){"run", "-i", "--image", "busybox", "--", "sh", "-c",
                                    "sleep 2; md5sum", NULL});
    ck_assert_msg(p.status == 0, "status %d: %s", p.status, p.e.data);
    {
        /* The same bytes' md5, from the host's md5sum. */
        char path[] = "/tmp/sbx-test-cli-XXXXXX", cmd[128];
        int fd = mkstemp(path);
        FILE *f;
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
        close(fd);
        snprintf(cmd, sizeof(cmd), "md5sum < %s", path);
        f = popen(cmd, "r");
        ck_assert_ptr_nonnull(fgets(want, sizeof(want), f));
        pclose(f);
        unlink(path);
    }
    ck_assert_str_eq(p.o.data, want);
    proc_free(&p);
    free(data);
}
END_TEST

START_TEST(test_run_detach_names_tags_ps)
{
    char *id = RUN_D("--name", "web", "--app", "shop", "--tag", "team=a", "--tag", "tier=1");
    char *other = RUN_D("--app", "shop");
    char *out, *before, *after;
    struct proc p;
    json_t *j;

    out = ok(SBX("ps"));
    ck_assert_msg(strstr(out, "SANDBOX ID") && strstr(out, id) && strstr(out, "web") &&
                      strstr(out, "shop") && strstr(out, "team=a"),
                  "%s", out);
    free(out);
    out = ok(SBX("ps", "-q", "--tag", "team=a"));
    ck_assert_int_eq(strlen(out), 26);
    ck_assert_int_eq(strncmp(out, id, 25), 0);
    free(out);
    out = ok(SBX("ps", "-q", "--tag", "team=a", "--tag", "tier=2"));
    ck_assert_str_eq(out, "");
    free(out);
    out = ok(SBX("ps", "-q", "--app", "nothing"));
    ck_assert_str_eq(out, "");
    free(out);
    out = ok(SBX("ps", "--json", "--app", "shop"));
    j = parse(out);
    ck_assert_int_eq(json_array_size(j), 2);
    json_decref(j);
    free(out);
    /* A name is unique among the app's running sandboxes. */
    p = SBX("run", "-d", "--image", "busybox", "--name", "web", "--app", "shop");
    assert_error(&p, 125, "already named `web`");
    proc_free(&p);
    /* --rm: nothing is left once it has run. */
    before = ok(SBX("ps", "-aq"));
    p = SBX("run", "--rm", "--image", "busybox", "--", "sh", "-c", "exit 3");
    ck_assert_int_eq(p.status, 3);
    proc_free(&p);
    after = ok(SBX("ps", "-aq"));
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    /* -a lists finished ones, the default does not. */
    free(ok(SBX("terminate", other)));
    out = ok(SBX("ps", "-q"));
    ck_assert_msg(!strstr(out, other) && strstr(out, id), "%s", out);
    free(out);
    out = ok(SBX("ps", "-aq"));
    ck_assert_msg(strstr(out, other) && strstr(out, id), "%s", out);
    free(out);
    free(id);
    free(other);
}
END_TEST

/* ---- exec ---- */

START_TEST(test_exec)
{
    char *id = RUN_D("--env", "FROM_RUN=1");
    struct proc p;
    char *out;

    p = SBX("exec", id, "--", "sh", "-c", "echo hi; echo bad >&2; exit 3");
    ck_assert_int_eq(p.status, 3);
    ck_assert_str_eq(p.o.data, "hi\n");
    ck_assert_str_eq(p.e.data, "bad\n");
    proc_free(&p);
    /* CMD without --, the sandbox's env, exec's own env and workdir. */
    out = ok(SBX("exec", "-e", "X=y", "-w", "/etc", id, "sh", "-c", "echo $FROM_RUN $X $(pwd)"));
    ck_assert_str_eq(out, "1 y /etc\n");
    free(out);
    p = SBX_IN("line 1\nline 2\n", "exec", "-i", id, "--", "sh", "-c", "cat; echo done");
    ck_assert_int_eq(p.status, 0);
    ck_assert_str_eq(p.o.data, "line 1\nline 2\ndone\n");
    proc_free(&p);
    /* Without -i, stdin is closed: cat ends at once. */
    p = SBX_IN("not sent\n", "exec", id, "--", "cat");
    ck_assert_int_eq(p.status, 0);
    ck_assert_str_eq(p.o.data, "");
    proc_free(&p);
    p = SBX("exec", id, "--", "/no/such/program");
    assert_error(&p, 127, "No such file or directory");
    proc_free(&p);
    p = SBX("exec", "sb-0000000000000000000000", "--", "true");
    assert_error(&p, 125, "no sandbox");
    proc_free(&p);
    p = SBX("exec", "--timeout", "1", id, "--", "sleep", "30");
    ck_assert_int_eq(p.status, 137);
    proc_free(&p);
    free(ok(SBX("terminate", id)));
    p = SBX("exec", id, "--", "true");
    assert_error(&p, 125, "finished");
    proc_free(&p);
    free(id);
}
END_TEST

START_TEST(test_sandbox_resolution)
{
    char *a = RUN_D("--name", "alpha", "--app", "proj");
    char *b = RUN_D("--name", "beta");
    char prefix[32];
    size_t n = 3;
    struct proc p;
    json_t *j;
    char *out;

    /* "sb-" begins both. */
    p = SBX("inspect", "sb-");
    assert_error(&p, 1, "ambiguous");
    ck_assert_msg(strstr(p.e.data, a) && strstr(p.e.data, b), "%s", p.e.data);
    proc_free(&p);
    /* The shortest prefix of a that is not one of b, with and without sb-. */
    while (!strncmp(a, b, n))
        n++;
    snprintf(prefix, sizeof(prefix), "%.*s", (int)n + 1, a);
    out = ok(SBX("inspect", "--json", prefix));
    j = parse(out);
    ck_assert_str_eq(json_string_value(json_object_get(j, "sandbox_id")), a);
    json_decref(j);
    free(out);
    out = ok(SBX("inspect", "--json", prefix + 3));
    j = parse(out);
    ck_assert_str_eq(json_string_value(json_object_get(j, "sandbox_id")), a);
    json_decref(j);
    free(out);
    /* app/name, and a bare name in the default app. */
    out = ok(SBX("inspect", "--json", "proj/alpha"));
    j = parse(out);
    ck_assert_str_eq(json_string_value(json_object_get(j, "sandbox_id")), a);
    ck_assert_str_eq(json_string_value(json_object_get(j, "app")), "proj");
    json_decref(j);
    free(out);
    out = ok(SBX("exec", "beta", "--", "hostname"));
    ck_assert_int_eq(strncmp(out, b, 25), 0);
    free(out);
    /* Several at once: an array. */
    out = ok(SBX("inspect", "--json", a, b));
    j = parse(out);
    ck_assert_int_eq(json_array_size(j), 2);
    json_decref(j);
    free(out);
    out = ok(SBX("inspect", "proj/alpha"));
    ck_assert_msg(strstr(out, "Sandbox:") && strstr(out, a) && strstr(out, "proj") &&
                      strstr(out, "started"),
                  "%s", out);
    free(out);
    p = SBX("inspect", "proj/gamma");
    assert_error(&p, 1, "no running sandbox named `gamma` in app `proj`");
    proc_free(&p);
    p = SBX("inspect", "zzzzzzzz");
    assert_error(&p, 1, "no sandbox `zzzzzzzz`");
    proc_free(&p);
    p = SBX("inspect", "sb-0000000000000000000000");
    assert_error(&p, 1, "no sandbox `sb-0000000000000000000000`");
    proc_free(&p);
    free(a);
    free(b);
}
END_TEST

/* ---- terminate, wait, rm ---- */

START_TEST(test_terminate_wait_rm)
{
    char *id = RUN_D("--", "sleep", "100");
    struct proc p, attached;
    char *out;
    json_t *j;

    p = SBX("wait", "--timeout", "0.3", id);
    assert_error(&p, 1, "still running");
    proc_free(&p);
    p = SBX("rm", id);
    assert_error(&p, 1, "is running");
    proc_free(&p);
    /* An attached run ends with the sandbox: 137. */
    proc_start(&attached, NULL, 0, (const char *const[]){"logs", "-f", id, NULL});
    out = ok(SBX("terminate", id));
    ck_assert_int_eq(strncmp(out, id, 25), 0);
    ck_assert_str_eq(out + 25, "\n");
    free(out);
    ck_assert_int_eq(proc_finish(&attached, 30), 0);
    proc_free(&attached);
    out = ok(SBX("wait", id));
    ck_assert_str_eq(out, "137\n");
    free(out);
    out = ok(SBX("wait", "--json", id));
    j = parse(out);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "returncode")), 137);
    ck_assert_str_eq(json_string_value(json_object_get(j, "finish_reason")), "terminated");
    json_decref(j);
    free(out);
    /* Terminating a finished sandbox changes nothing. */
    free(ok(SBX("terminate", id)));
    out = ok(SBX("rm", id));
    ck_assert_str_eq(out + 25, "\n");
    free(out);
    p = SBX("inspect", id);
    assert_error(&p, 1, "no sandbox");
    proc_free(&p);
    /* rm -f of a running one. */
    free(id);
    id = run_detached(NULL);
    out = ok(SBX("rm", "-f", id));
    free(out);
    out = ok(SBX("ps", "-aq"));
    ck_assert_msg(!strstr(out, id), "%s", out);
    free(out);
    free(id);
}
END_TEST

START_TEST(test_run_attached_terminated_and_interrupted)
{
    struct proc p;
    char *out;

    /* Terminated from elsewhere: sbx run exits 137, like docker run. */
    proc_start(&p, NULL, 0,
               (const char *const[]){"run", "--image", "busybox", "--name", "long", "--", "sh",
                                     "-c", "echo up; sleep 100", NULL});
    ck_assert_msg(proc_pump(&p, "up\n", 20000), "no output: %s", p.e.data ? p.e.data : "");
    free(ok(SBX("terminate", "default/long")));
    ck_assert_int_eq(proc_finish(&p, 30), 137);
    proc_free(&p);
    /* SIGINT to sbx run terminates the sandbox; sbx ends with it. */
    proc_start(&p, NULL, 0,
               (const char *const[]){"run", "--image", "busybox", "--", "sh", "-c",
                                     "echo up; sleep 100", NULL});
    ck_assert(proc_pump(&p, "up\n", 20000));
    kill(p.pid, SIGINT);
    ck_assert_int_eq(proc_finish(&p, 30), 137);
    proc_free(&p);
    out = ok(SBX("ps", "-q"));
    ck_assert_str_eq(out, "");
    free(out);
    /* exec forwards SIGINT to its process, which may handle it. */
    {
        char *id = run_detached(NULL);
        proc_start(&p, NULL, 0,
                   (const char *const[]){"exec", id, "--", "sh", "-c",
                                         "trap 'echo got INT; exit 9' INT; echo ready; "
                                         "while :; do sleep 0.1; done",
                                         NULL});
        ck_assert(proc_pump(&p, "ready\n", 20000));
        kill(p.pid, SIGINT);
        ck_assert_int_eq(proc_finish(&p, 30), 9);
        ck_assert_str_eq(p.o.data, "ready\ngot INT\n");
        proc_free(&p);
        free(id);
    }
}
END_TEST

/* ---- logs, events, stats, tags ---- */

START_TEST(test_logs_events_stats_tags)
{
    char *id = RUN_D("--", "sh", "-c", "echo a; echo b >&2; sleep 1; echo c");
    char *idle = run_detached(NULL);
    struct proc p;
    char *out, pid[32];
    json_t *j;

    /* -f follows to the end, each stream to its own. */
    p = SBX("logs", "-f", id);
    ck_assert_int_eq(p.status, 0);
    ck_assert_str_eq(p.o.data, "a\nc\n");
    ck_assert_str_eq(p.e.data, "b\n");
    proc_free(&p);
    p = SBX("logs", "--stderr", id);
    ck_assert_int_eq(p.status, 0);
    ck_assert_str_eq(p.o.data, "");
    ck_assert_str_eq(p.e.data, "b\n");
    proc_free(&p);
    /* The events, human and NDJSON. */
    out = ok(SBX("events", id));
    ck_assert_msg(strstr(out, "created") && strstr(out, "started") && strstr(out, "finished"), "%s",
                  out);
    free(out);
    out = ok(SBX("events", "-f", "--json", id));
    {
        char *line, *save = NULL;
        const char *last = NULL;
        for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            json_t *ev = parse(line);
            ck_assert_ptr_nonnull(json_object_get(ev, "at"));
            last = strcmp(json_string_value(json_object_get(ev, "event")), "finished") ? last
                                                                                       : "finished";
            json_decref(ev);
        }
        ck_assert_ptr_nonnull(last);
    }
    free(out);
    /* An exec'd process's output, named by a prefix of its id. */
    free(ok(SBX("exec", idle, "--", "sh", "-c", "echo from exec")));
    out = ok(SBX("inspect", idle));
    {
        char *pr = strstr(out, "pr-");
        ck_assert_ptr_nonnull(pr);
        snprintf(pid, sizeof(pid), "%.10s", pr);
    }
    free(out);
    out = ok(SBX("logs", idle, pid + 3));
    ck_assert_str_eq(out, "from exec\n");
    free(out);
    p = SBX("logs", idle);
    assert_error(&p, 1, "no entrypoint");
    proc_free(&p);
    /* stats */
    out = ok(SBX("stats", idle));
    ck_assert_msg(strstr(out, "MEMORY") && strstr(out, idle), "%s", out);
    free(out);
    out = ok(SBX("stats", "--json"));
    j = parse(out);
    ck_assert_int_eq(json_array_size(j), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "sandbox_id")), idle);
    ck_assert(json_is_integer(json_object_get(json_array_get(j, 0), "memory_current")));
    json_decref(j);
    free(out);
    /* tags: set, show, remove, replace */
    free(ok(SBX("tag", idle, "a=1", "b=2")));
    out = ok(SBX("tag", idle));
    ck_assert_str_eq(out, "a=1\nb=2\n");
    free(out);
    free(ok(SBX("tag", idle, "a-")));
    out = ok(SBX("tag", "--json", idle));
    j = parse(out);
    ck_assert_int_eq(json_object_size(j), 1);
    ck_assert_str_eq(json_string_value(json_object_get(j, "b")), "2");
    json_decref(j);
    free(out);
    free(ok(SBX("tag", "--replace", idle, "c=3")));
    out = ok(SBX("ps", "-q", "--tag", "c=3"));
    ck_assert_int_eq(strncmp(out, idle, 25), 0);
    free(out);
    free(id);
    free(idle);
}
END_TEST

/* ---- cp ---- */

static void write_file(const char *path, const char *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    chmod(path, mode);
}

START_TEST(test_cp_both_ways)
{
    char *id = run_detached(NULL);
    char src[256], back[256], path[512], cmd[1024];
    size_t big_len = 6u << 20;
    char *big = malloc(big_len), *out;
    struct stat st;
    struct proc p;

    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)(i * 2654435761u >> 13);
    snprintf(src, sizeof(src), "%s/tree", dl_dir);
    snprintf(back, sizeof(back), "%s/back", dl_dir);
    ck_assert_int_eq(mkdir(src, 0755), 0);
    snprintf(path, sizeof(path), "%s/sub", src);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/empty", src);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/a.txt", src);
    write_file(path, "hello\n", 6, 0644);
    snprintf(path, sizeof(path), "%s/sub/big.bin", src);
    write_file(path, big, big_len, 0750);
    snprintf(path, sizeof(path), "%s/sub/empty-file", src);
    write_file(path, "", 0, 0600);

    /* Up: into a new path, then into an existing directory. */
    snprintf(path, sizeof(path), "%s:/data", id);
    free(ok(SBX("cp", src, path)));
    out = ok(SBX("exec", id, "--", "sh", "-c",
                 "cd /data && find . | sort && stat -c '%a %s' sub/big.bin sub/empty-file"));
    {
        char want[256];
        snprintf(want, sizeof(want),
                 ".\n./a.txt\n./empty\n./sub\n./sub/big.bin\n./sub/empty-file\n750 %zu\n600 0\n",
                 big_len);
        ck_assert_str_eq(out, want);
    }
    free(out);
    snprintf(path, sizeof(path), "%s:/tmp", id);
    free(ok(SBX("cp", src, path)));
    out = ok(SBX("exec", id, "--", "cat", "/tmp/tree/a.txt"));
    ck_assert_str_eq(out, "hello\n");
    free(out);

    /* Down: a directory, compared byte for byte and mode for mode. */
    snprintf(path, sizeof(path), "%s:/data", id);
    free(ok(SBX("cp", path, back)));
    snprintf(cmd, sizeof(cmd), "diff -r '%s' '%s'", src, back);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/sub/big.bin", back);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0750);
    /* A file into an existing directory, and to stdout; from stdin. */
    snprintf(path, sizeof(path), "%s:/data/a.txt", id);
    free(ok(SBX("cp", path, dl_dir)));
    snprintf(path, sizeof(path), "%s/a.txt", dl_dir);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 6);
    snprintf(path, sizeof(path), "%s:/data/a.txt", id);
    out = ok(SBX("cp", path, "-"));
    ck_assert_str_eq(out, "hello\n");
    free(out);
    snprintf(path, sizeof(path), "%s:/tmp/from-stdin", id);
    p = SBX_IN("piped\n", "cp", "-", path);
    ck_assert_int_eq(p.status, 0);
    proc_free(&p);
    out = ok(SBX("exec", id, "--", "cat", "/tmp/from-stdin"));
    ck_assert_str_eq(out, "piped\n");
    free(out);
    /* What is not there. */
    snprintf(path, sizeof(path), "%s:/no/such", id);
    p = SBX("cp", path, back);
    assert_error(&p, 1, "no such file or directory");
    proc_free(&p);
    snprintf(cmd, sizeof(cmd), "%s/nothing-here", dl_dir);
    p = SBX("cp", cmd, path);
    assert_error(&p, 1, "No such file or directory");
    proc_free(&p);
    free(big);
    free(id);
}
END_TEST

/* ---- a daemon restart in the middle ---- */

START_TEST(test_exec_survives_daemon_restart)
{
    char *id = run_detached(NULL);
    struct proc p;
    char want[256] = "";

    for (int i = 1; i <= 25; i++)
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%d\n", i);
    proc_start(&p, NULL, 0,
               (const char *const[]){"exec", id, "--", "sh", "-c",
                                     "i=1; while [ $i -le 25 ]; do echo $i; i=$((i+1)); "
                                     "sleep 0.1; done; exit 6",
                                     NULL});
    ck_assert(proc_pump(&p, "3\n", 20000));
    dl_stop_daemon(SIGKILL);
    usleep(500000);
    dl_start_daemon(NULL);
    /* Every line once, in order, and the returncode. */
    ck_assert_int_eq(proc_finish(&p, 60), 6);
    ck_assert_str_eq(p.o.data, want);
    proc_free(&p);
    free(id);
}
END_TEST

START_TEST(test_run_daemon_gone)
{
    struct proc p;

    proc_start(&p, NULL, 0,
               (const char *const[]){"run", "--image", "busybox", "--name", "orphan", "--", "sh",
                                     "-c", "echo up; sleep 100", NULL});
    ck_assert(proc_pump(&p, "up\n", 20000));
    dl_stop_daemon(SIGKILL);
    /* sbx tries to reconnect for a few seconds, then says so, once. */
    proc_finish(&p, 30);
    assert_error(&p, 125, "may still be running");
    proc_free(&p);
    dl_start_daemon(NULL);
    free(ok(SBX("terminate", "default/orphan")));
}
END_TEST

/* ---- -t on a real pty ---- */

struct pty_proc {
    pid_t pid; /* a stand-in for the user's shell; it exits as sbx did */
    pid_t sbx; /* sbx, the foreground job on the terminal */
    int master, slave;
    struct termios orig;
    struct dl_buf out;
    int status;
};

/* Runs sbx on a new pty the way an interactive shell runs a job: the shell
 * (a session leader with the pty as its terminal) puts sbx in a process
 * group of its own in the foreground, waits for it and exits as it did.
 * A job of a shell, not an orphaned group, is what ^Z/SIGTSTP can stop. */
/* A small file's text (free it), or NULL. */
static char *slurp_file(const char *path)
{
    char buf[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return NULL;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return strdup(buf);
}

static void pty_start(struct pty_proc *t, const char *const *argv)
{
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    int pids[2];

    *t = (struct pty_proc){.status = -1};
    ck_assert_int_eq(openpty(&t->master, &t->slave, NULL, NULL, &ws), 0);
    ck_assert_int_eq(tcgetattr(t->slave, &t->orig), 0);
    ck_assert_int_eq(pipe2(pids, O_CLOEXEC), 0);
    t->pid = fork();
    ck_assert_int_ge(t->pid, 0);
    if (t->pid == 0) {
        pid_t job;
        int st;

        setsid();
        ioctl(t->slave, TIOCSCTTY, 0);
        dup2(t->slave, 0);
        dup2(t->slave, 1);
        dup2(t->slave, 2);
        close(t->master);
        if (t->slave > 2)
            close(t->slave);
        signal(SIGTTOU, SIG_IGN);
        job = fork();
        if (job == 0) {
            setpgid(0, 0);
            tcsetpgrp(0, getpid());
            signal(SIGTTOU, SIG_DFL);
            /* A terminal's shell starts its jobs with these at their
             * defaults, whatever the test runs under (nohup ignores
             * SIGHUP, and sbx keeps what was ignored ignored). */
            signal(SIGHUP, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            signal(SIGQUIT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            setenv("SANDBOXD_HOST", dl_sock, 1);
            setenv("TERM", "xterm", 1);
            exec_sbx(argv);
        }
        setpgid(job, job);
        tcsetpgrp(0, job);
        if (write(pids[1], &job, sizeof(job)) != sizeof(job))
            _exit(126);
        while (waitpid(job, &st, 0) < 0 && errno == EINTR)
            ;
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    close(pids[1]);
    ck_assert_int_eq(read(pids[0], &t->sbx, sizeof(t->sbx)), (ssize_t)sizeof(t->sbx));
    close(pids[0]);
    fcntl(t->master, F_SETFL, O_NONBLOCK);
}

/* Reads the pty for up to timeout_ms; true once `until` was seen (or, with
 * until NULL, once the child has exited). */
static bool pty_pump(struct pty_proc *t, const char *until, int timeout_ms)
{
    double end = dl_now_ms() + timeout_ms;

    for (;;) {
        struct pollfd pfd = {.fd = t->master, .events = POLLIN};
        char buf[4096];
        ssize_t r;
        int st;

        if (until && t->out.data && strstr(t->out.data, until))
            return true;
        if (t->status < 0 && waitpid(t->pid, &st, WNOHANG) == t->pid)
            t->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (!until && t->status >= 0) {
            while ((r = read(t->master, buf, sizeof(buf))) > 0)
                append(&t->out, buf, (size_t)r);
            return true;
        }
        if (dl_now_ms() > end)
            return false;
        poll(&pfd, 1, 50);
        while ((r = read(t->master, buf, sizeof(buf))) > 0)
            append(&t->out, buf, (size_t)r);
    }
}

static void pty_expect(struct pty_proc *t, const char *until)
{
    ck_assert_msg(pty_pump(t, until, 20000), "no [%s] on the terminal: [%s]", until,
                  t->out.data ? t->out.data : "");
}

static void pty_write(struct pty_proc *t, const char *s)
{
    ck_assert_int_eq(write(t->master, s, strlen(s)), (ssize_t)strlen(s));
}

/* Raw mode: no line editing, no echo, no signals from keys. */
static bool pty_is_raw(struct pty_proc *t)
{
    struct termios now;

    ck_assert_int_eq(tcgetattr(t->slave, &now), 0);
    return !(now.c_lflag & (ICANON | ECHO | ISIG)) && !(now.c_oflag & OPOST);
}

static void pty_wait_raw(struct pty_proc *t)
{
    for (int i = 0; i < 400 && !pty_is_raw(t); i++) {
        pty_pump(t, "\x01never", 0);
        usleep(25000);
    }
    ck_assert_msg(pty_is_raw(t), "the terminal never went raw: [%s]",
                  t->out.data ? t->out.data : "");
}

/* Waits for the end; asserts the terminal is as it was; the status. */
static int pty_finish(struct pty_proc *t, int timeout_s)
{
    struct termios now;

    if (!pty_pump(t, NULL, timeout_s * 1000)) {
        /* Where it hangs, for the report: its state, kernel wait channel
         * and syscall. */
        char path[64], *stat_s, *wchan, *sysc;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)t->sbx);
        stat_s = slurp_file(path);
        snprintf(path, sizeof(path), "/proc/%d/wchan", (int)t->sbx);
        wchan = slurp_file(path);
        snprintf(path, sizeof(path), "/proc/%d/syscall", (int)t->sbx);
        sysc = slurp_file(path);
        fprintf(stderr, "sbx %d hangs: stat [%s] wchan [%s] syscall [%s]\n", (int)t->sbx,
                stat_s ? stat_s : "?", wchan ? wchan : "?", sysc ? sysc : "?");
        free(stat_s);
        free(wchan);
        free(sysc);
        kill(t->sbx, SIGKILL);
        kill(t->pid, SIGKILL);
        pty_pump(t, NULL, 5000);
        ck_abort_msg("sbx did not end within %d s: [%s]", timeout_s,
                     t->out.data ? t->out.data : "");
    }
    ck_assert_int_eq(tcgetattr(t->slave, &now), 0);
    ck_assert_msg(now.c_lflag == t->orig.c_lflag && now.c_iflag == t->orig.c_iflag &&
                      now.c_oflag == t->orig.c_oflag && now.c_cflag == t->orig.c_cflag &&
                      !memcmp(now.c_cc, t->orig.c_cc, sizeof(now.c_cc)),
                  "the terminal was not restored (lflag %o, was %o)", now.c_lflag, t->orig.c_lflag);
    if (!t->out.data)
        t->out.data = strdup("");
    return t->status;
}

static void pty_free(struct pty_proc *t)
{
    close(t->master);
    close(t->slave);
    free(t->out.data);
}

START_TEST(test_tty_exec_raw_resize_restore)
{
    char *id = run_detached(NULL);
    struct winsize ws = {.ws_row = 50, .ws_col = 132};
    struct pty_proc t;

    pty_start(&t, (const char *const[]){"exec", "-it", id, "--", "sh", "-c",
                                        "echo size $(stty size) term $TERM; read x; echo got:$x; "
                                        "echo size $(stty size); exit 4",
                                        NULL});
    pty_expect(&t, "size 24 80 term xterm");
    ck_assert(pty_is_raw(&t));
    /* A resize here reaches the sandbox's terminal (SIGWINCH → resize). */
    ck_assert_int_eq(ioctl(t.master, TIOCSWINSZ, &ws), 0);
    usleep(500000);
    /* Raw: the CR goes as it is; the sandbox's terminal makes it a newline. */
    pty_write(&t, "hello\r");
    pty_expect(&t, "got:hello");
    pty_expect(&t, "size 50 132");
    ck_assert_int_eq(pty_finish(&t, 30), 4);
    pty_free(&t);
    free(id);
}
END_TEST

START_TEST(test_tty_ctrl_c_goes_to_the_sandbox)
{
    char *id = run_detached(NULL);
    struct pty_proc t;

    pty_start(&t, (const char *const[]){"exec", "-it", id, "--", "sh", "-c",
                                        "trap 'echo caught; exit 3' INT; echo ready; "
                                        "while :; do sleep 0.1; done",
                                        NULL});
    pty_expect(&t, "ready");
    pty_wait_raw(&t);
    pty_write(&t, "\x03");
    pty_expect(&t, "caught");
    ck_assert_int_eq(pty_finish(&t, 30), 3);
    pty_free(&t);
    free(id);
}
END_TEST

START_TEST(test_tty_sandbox_terminated_mid_session)
{
    char *id = run_detached(NULL);
    struct pty_proc t;

    pty_start(&t, (const char *const[]){"exec", "-it", id, "--", "sh", "-c",
                                        "echo ready; sleep 100", NULL});
    pty_expect(&t, "ready");
    pty_wait_raw(&t);
    free(ok(SBX("terminate", id)));
    ck_assert_int_eq(pty_finish(&t, 30), 137);
    pty_free(&t);
    free(id);
}
END_TEST

START_TEST(test_tty_signals_restore)
{
    /* The last one stands for a crash: it ends sbx by the default action
     * (or, under ASan, by the sanitizer's report), after the restore. */
    static const int sigs[] = {SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGSEGV};
    char *id = run_detached(NULL);

    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        struct pty_proc t;
        int status;
        pty_start(&t, (const char *const[]){"exec", "-it", id, "--", "sh", "-c",
                                            "echo ready; sleep 100", NULL});
        pty_expect(&t, "ready");
        pty_wait_raw(&t);
        kill(t.sbx, sigs[i]);
        status = pty_finish(&t, 30);
        if (sigs[i] == SIGSEGV)
            ck_assert_int_ne(status, 0);
        else
            ck_assert_int_eq(status, 128 + sigs[i]);
        pty_free(&t);
    }
    /* The processes that got the forwarded signals are gone. */
    free(ok(SBX("terminate", id)));
    free(id);
}
END_TEST

/* The state letter of /proc/PID/stat ('T' when stopped). */
static char proc_state(pid_t pid)
{
    char path[64], buf[512], *paren;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return '?';
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    paren = strrchr(buf, ')');
    return paren && paren[1] && paren[2] ? paren[2] : '?';
}

START_TEST(test_tty_stop_and_continue)
{
    char *id = run_detached(NULL);
    struct pty_proc t;
    int i;

    pty_start(&t, (const char *const[]){"exec", "-it", id, "--", "sh", "-c",
                                        "echo ready; read x; echo got:$x", NULL});
    pty_expect(&t, "ready");
    pty_wait_raw(&t);
    /* Stopped (SIGTSTP from elsewhere): the terminal is the shell's again. */
    kill(t.sbx, SIGTSTP);
    for (i = 0; i < 200 && proc_state(t.sbx) != 'T'; i++)
        usleep(10000);
    ck_assert_int_eq(proc_state(t.sbx), 'T');
    ck_assert_msg(!pty_is_raw(&t), "raw while stopped");
    /* Continued: raw again, and the session goes on. */
    kill(t.sbx, SIGCONT);
    pty_wait_raw(&t);
    pty_write(&t, "on\r");
    pty_expect(&t, "got:on");
    ck_assert_int_eq(pty_finish(&t, 30), 0);
    pty_free(&t);
    free(id);
}
END_TEST

START_TEST(test_tty_daemon_gone)
{
    char *id = run_detached(NULL);
    struct pty_proc t;

    pty_start(&t, (const char *const[]){"exec", "-it", id, "--", "sh", "-c",
                                        "echo ready; sleep 100", NULL});
    pty_expect(&t, "ready");
    pty_wait_raw(&t);
    dl_stop_daemon(SIGKILL);
    /* sbx tries to reconnect for a few seconds, then gives up. */
    ck_assert_int_eq(pty_finish(&t, 30), 125);
    {
        /* One line that says what happened. */
        const char *first = strstr(t.out.data, "sbx: ");
        ck_assert_msg(first && !strstr(first + 1, "sbx: ") && strstr(first, "sandboxd"), "[%s]",
                      t.out.data);
    }
    pty_free(&t);
    /* Back, for the teardown to clean up.  A sandbox with a process still
     * running takes a second or two to end: end it before the teardown,
     * which gives it only 200 ms before stopping the daemon. */
    dl_start_daemon(NULL);
    free(ok(SBX("terminate", id)));
    free(id);
}
END_TEST

START_TEST(test_tty_run_and_shell)
{
    struct pty_proc t;
    char *id;

    pty_start(&t, (const char *const[]){"run", "-it", "--rm", "--image", "busybox", NULL});
    pty_wait_raw(&t);
    pty_write(&t, "echo $((6*7))\r");
    pty_expect(&t, "42");
    pty_write(&t, "exit 5\r");
    ck_assert_int_eq(pty_finish(&t, 30), 5);
    pty_free(&t);

    id = RUN_D("--name", "sh1");
    pty_start(&t, (const char *const[]){"shell", "sh1", NULL});
    pty_wait_raw(&t);
    pty_write(&t, "echo in-$((40+2))\r");
    pty_expect(&t, "in-42");
    pty_write(&t, "exit 4\r");
    ck_assert_int_eq(pty_finish(&t, 30), 4);
    pty_free(&t);
    free(id);
}
END_TEST

/* sbx tunnels and inspect show where a sandbox's ports are served. */
START_TEST(test_tunnels)
{
    char *id = dl_create("{\"image\":\"busybox\",\"ports\":[8080],\"entrypoint\":"
                         "[\"httpd\",\"-f\",\"-p\",\"8080\",\"-h\",\"/\"]}");
    char *out, want[64];
    json_t *j;
    const char *url;

    out = ok(SBX("tunnels", "--json", id));
    j = parse(out);
    url = json_string_value(json_object_get(json_object_get(j, "8080"), "url"));
    ck_assert_msg(url && !strncmp(url, "http://127.0.0.1:", 17), "%s", out);
    free(out);
    out = ok(SBX("tunnels", id));
    ck_assert_msg(strstr(out, "PORT") && strstr(out, "8080") && strstr(out, url), "%s", out);
    free(out);
    out = ok(SBX("inspect", id));
    snprintf(want, sizeof(want), "8080 -> %s", url);
    ck_assert_msg(strstr(out, want), "%s", out);
    free(out);
    json_decref(j);
    /* A sandbox without ports has none, at once. */
    {
        char *idle = dl_create("{\"image\":\"busybox\"}");
        struct proc p = SBX("tunnels", "--timeout", "1", idle);
        ck_assert_int_eq(p.status, 0);
        ck_assert_msg(!strstr(p.o.data, "127.0.0.1"), "%s", p.o.data);
        proc_free(&p);
        free(idle);
    }
    free(id);
}
END_TEST

/* ---- volumes and secrets ---- */

/* The subcommands' help and the mistakes caught before any request. */
START_TEST(test_volume_secret_usage)
{
    static const char *const subs[][2] = {
        {"volume", "create"}, {"volume", "ls"},    {"volume", "rm"},      {"volume", "put"},
        {"volume", "get"},    {"volume", "files"}, {"volume", "rm-file"}, {"secret", "create"},
        {"secret", "ls"},     {"secret", "rm"}};
    struct proc p;
    char *out;

    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        char want[64];
        out = ok(SBX(subs[i][0], "--help"));
        ck_assert_msg(strstr(out, subs[i][1]), "sbx %s --help lacks %s: [%s]", subs[i][0],
                      subs[i][1], out);
        free(out);
        out = ok(SBX(subs[i][0], subs[i][1], "--help"));
        snprintf(want, sizeof(want), "usage: sbx %s %s", subs[i][0], subs[i][1]);
        ck_assert_msg(!strncmp(out, want, strlen(want)), "[%s]", out);
        free(out);
    }
    /* `sbx help volume` is `sbx volume --help`. */
    out = ok(SBX("help", "volume"));
    ck_assert_msg(!strncmp(out, "usage: sbx volume", 17), "[%s]", out);
    free(out);
    p = SBX("volume");
    ck_assert_int_eq(p.status, 2);
    ck_assert_msg(strstr(p.e.data, "usage: sbx volume"), "[%s]", p.e.data);
    proc_free(&p);
    p = SBX("volume", "frobnicate");
    assert_error(&p, 2, "no command `frobnicate`");
    proc_free(&p);
    p = SBX("secret", "ls", "--bogus");
    assert_error(&p, 2, "--bogus");
    proc_free(&p);
    p = SBX("volume", "create");
    assert_error(&p, 2, "give one NAME");
    proc_free(&p);
    p = SBX("volume", "create", "--ephemeral", "named");
    assert_error(&p, 2, "give no NAME");
    proc_free(&p);
    p = SBX("volume", "create", "--size", "0", "v");
    assert_error(&p, 2, "--size `0`");
    proc_free(&p);
    p = SBX("volume", "put", "v");
    assert_error(&p, 2, "sbx volume put");
    proc_free(&p);
    p = SBX("volume", "get", "v", "/a", "b", "c");
    assert_error(&p, 2, "sbx volume get");
    proc_free(&p);
    p = SBX("volume", "rm-file", "v");
    assert_error(&p, 2, "PATH");
    proc_free(&p);
    p = SBX("volume", "rm");
    assert_error(&p, 2, "no NAME");
    proc_free(&p);
    p = SBX("secret", "create", "s");
    assert_error(&p, 2, "no variables");
    proc_free(&p);
    /* A malformed argument is not quoted: it may be a value. */
    p = SBX("secret", "create", "s", "K=v", "hunter2-not-shown");
    assert_error(&p, 2, "argument 2 after NAME: expected K=VALUE");
    ck_assert_msg(!strstr(p.e.data, "hunter2"), "[%s]", p.e.data);
    proc_free(&p);
    p = SBX("secret", "create", "s", "--from-env", "SBX_TEST_SURELY_UNSET");
    assert_error(&p, 2, "SBX_TEST_SURELY_UNSET: not set");
    proc_free(&p);
    p = SBX("run", "--volume", "cache", "--", "true");
    assert_error(&p, 125, "--volume `cache`: expected NAME:/DIR");
    proc_free(&p);
    p = SBX("run", "-v", "a:/x", "-v", "b:/x", "--", "true");
    assert_error(&p, 125, "another volume is at /x");
    proc_free(&p);
    p = SBX("run", "--mount", "relative:/x", "--", "true");
    assert_error(&p, 125, "--mount `relative:/x`");
    proc_free(&p);
    p = SBX("run", "--mount", "/etc:/x:rx", "--", "true");
    assert_error(&p, 125, "not :ro or :rw");
    proc_free(&p);
}
END_TEST

/* Modal's pattern through sbx: a volume made, files put in (a file, a
 * tree, stdin), listed and got back; a sandbox run with --volume writes a
 * file that `volume get` reads; not deleted while a sandbox uses it. */
START_TEST(test_volume_round_trip)
{
    char src[256], back[256], path[512], cmd[1024], *out, *id;
    struct stat st;
    struct proc p;
    json_t *j;

    out = ok(SBX("volume", "create", "cache"));
    ck_assert_str_eq(out, "cache\n");
    free(out);
    /* Creating one that is there leaves it as it is. */
    out = ok(SBX("volume", "create", "cache"));
    ck_assert_str_eq(out, "cache\n");
    free(out);
    out = ok(SBX("volume", "ls", "-q"));
    ck_assert_str_eq(out, "cache\n");
    free(out);
    out = ok(SBX("volume", "ls"));
    ck_assert_msg(strstr(out, "NAME") && strstr(out, "IN USE BY") && strstr(out, "cache") &&
                      strstr(out, "vo-") && strstr(out, "named"),
                  "%s", out);
    free(out);

    /* In: a file to a new path, a tree, stdin. */
    snprintf(src, sizeof(src), "%s/tree", dl_dir);
    snprintf(back, sizeof(back), "%s/back", dl_dir);
    ck_assert_int_eq(mkdir(src, 0755), 0);
    snprintf(path, sizeof(path), "%s/sub", src);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/a.txt", src);
    write_file(path, "hello\n", 6, 0644);
    snprintf(path, sizeof(path), "%s/sub/run.sh", src);
    write_file(path, "#!/bin/sh\necho ran\n", 19, 0755);
    snprintf(path, sizeof(path), "%s/a.txt", src);
    free(ok(SBX("volume", "put", "cache", path, "/single/a.txt")));
    free(ok(SBX("volume", "put", "cache", src, "/tree")));
    p = SBX_IN("piped\n", "volume", "put", "cache", "-", "/from-stdin");
    ck_assert_int_eq(p.status, 0);
    proc_free(&p);
    /* Into the root by default: stdin needs a file's name. */
    p = SBX_IN("x", "volume", "put", "cache", "-");
    assert_error(&p, 1, "is a directory");
    proc_free(&p);

    out = ok(SBX("volume", "files", "cache"));
    ck_assert_msg(strstr(out, "NAME") && strstr(out, "from-stdin") && strstr(out, "single") &&
                      strstr(out, "tree") && strstr(out, "directory"),
                  "%s", out);
    free(out);
    out = ok(SBX("volume", "files", "--json", "cache", "/tree/sub"));
    j = parse(out);
    ck_assert_int_eq(json_array_size(j), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "name")), "run.sh");
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(j, 0), "mode")), 0755);
    json_decref(j);
    free(out);

    /* Out: to stdout (the default and `-`), and a tree into a new directory. */
    out = ok(SBX("volume", "get", "cache", "/single/a.txt"));
    ck_assert_str_eq(out, "hello\n");
    free(out);
    out = ok(SBX("volume", "get", "cache", "from-stdin", "-"));
    ck_assert_str_eq(out, "piped\n");
    free(out);
    free(ok(SBX("volume", "get", "cache", "/tree", back)));
    snprintf(cmd, sizeof(cmd), "diff -r '%s' '%s'", src, back);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/sub/run.sh", back);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0755);
    p = SBX("volume", "get", "cache", "/tree");
    assert_error(&p, 1, "cannot go to stdout");
    proc_free(&p);
    p = SBX("volume", "get", "cache", "/no/such");
    assert_error(&p, 1, "cache:/no/such: no such file or directory");
    proc_free(&p);
    p = SBX("volume", "get", "nope", "/a.txt");
    assert_error(&p, 1, "no volume `nope`");
    proc_free(&p);

    /* A sandbox mounts it: reads what was put, writes what get reads. */
    p = SBX("run", "--image", "busybox", "--volume", "cache:/cache", "--", "sh", "-c",
            "cat /cache/single/a.txt; /cache/tree/sub/run.sh; echo from-run > /cache/out.txt");
    ck_assert_msg(p.status == 0, "status %d: %s", p.status, p.e.data);
    ck_assert_str_eq(p.o.data, "hello\nran\n");
    proc_free(&p);
    out = ok(SBX("volume", "get", "cache", "/out.txt"));
    ck_assert_str_eq(out, "from-run\n");
    free(out);

    /* Deleting files: a directory needs -r. */
    p = SBX("volume", "rm-file", "cache", "/tree");
    assert_error(&p, 1, "-r");
    proc_free(&p);
    free(ok(SBX("volume", "rm-file", "-r", "cache", "/tree", "/single/a.txt")));
    out = ok(SBX("volume", "files", "--json", "cache"));
    ck_assert_msg(!strstr(out, "\"tree\"") && strstr(out, "\"out.txt\""), "%s", out);
    free(out);
    out = ok(SBX("volume", "files", "cache", "/single"));
    ck_assert_str_eq(out, "NAME   TYPE   SIZE   MODE   MODIFIED\n");
    free(out);

    /* In use by a running sandbox: 409, said so; deleted once it ended. */
    id = RUN_D("-v", "cache:/data");
    out = ok(SBX("volume", "ls", "--json"));
    j = parse(out);
    ck_assert_int_eq(json_array_size(j), 1);
    ck_assert_str_eq(
        json_string_value(json_array_get(json_object_get(json_array_get(j, 0), "in_use_by"), 0)),
        id);
    json_decref(j);
    free(out);
    p = SBX("volume", "rm", "cache");
    assert_error(&p, 1, "is mounted by 1 running sandbox");
    ck_assert_msg(strstr(p.e.data, id) && strstr(p.e.data, "terminate"), "%s", p.e.data);
    proc_free(&p);
    free(ok(SBX("terminate", id)));
    out = ok(SBX("volume", "rm", "cache"));
    ck_assert_str_eq(out, "cache\n");
    free(out);
    out = ok(SBX("volume", "ls", "-q"));
    ck_assert_str_eq(out, "");
    free(out);
    p = SBX("volume", "rm", "cache");
    assert_error(&p, 1, "no volume `cache`");
    proc_free(&p);
    p = SBX("run", "--image", "busybox", "-v", "cache:/cache", "--", "true");
    assert_error(&p, 125, "no volume `cache`");
    proc_free(&p);

    /* Ephemeral: named by its id, gone once its sandbox has finished. */
    {
        char vol[64], mnt[96];
        out = ok(SBX("volume", "create", "--ephemeral"));
        ck_assert_msg(!strncmp(out, "vo-", 3) && strchr(out, '\n'), "%s", out);
        snprintf(vol, sizeof(vol), "%.*s", (int)strcspn(out, "\n"), out);
        free(out);
        out = ok(SBX("volume", "ls"));
        ck_assert_msg(strstr(out, vol) && strstr(out, "ephemeral"), "%s", out);
        free(out);
        snprintf(mnt, sizeof(mnt), "%s:/e", vol);
        p = SBX("run", "--image", "busybox", "-v", mnt, "--", "sh", "-c", "echo x > /e/x");
        ck_assert_int_eq(p.status, 0);
        proc_free(&p);
        out = ok(SBX("volume", "ls", "-q"));
        ck_assert_str_eq(out, "");
        free(out);
    }
    free(id);
}
END_TEST

/* --size: the cap shown, kept (another one refused), and enforced on put. */
START_TEST(test_volume_size_cap)
{
    size_t len = 20u << 20;
    char *big = calloc(1, len), path[256];
    struct proc p;
    json_t *j;
    char *out;

    ck_assert_ptr_nonnull(big);
    out = ok(SBX("volume", "create", "--size", "16m", "small"));
    ck_assert_str_eq(out, "small\n");
    free(out);
    free(ok(SBX("volume", "create", "plain")));
    out = ok(SBX("volume", "ls"));
    ck_assert_msg(strstr(out, "SIZE") && strstr(out, "16 MiB"), "%s", out);
    free(out);
    out = ok(SBX("volume", "ls", "--json"));
    j = parse(out);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 1), "name")), "small");
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(j, 1), "size_mib")), 16);
    ck_assert(json_is_null(json_object_get(json_array_get(j, 0), "size_mib")));
    json_decref(j);
    free(out);
    /* There already: the same cap or none asked is fine, another is not. */
    free(ok(SBX("volume", "create", "--size", "16", "small")));
    free(ok(SBX("volume", "create", "small")));
    p = SBX("volume", "create", "--size", "32", "small");
    assert_error(&p, 1, "another size cap");
    proc_free(&p);
    /* Past the cap: the copy fails, saying why. */
    snprintf(path, sizeof(path), "%s/big.bin", dl_dir);
    write_file(path, big, len, 0644);
    p = SBX("volume", "put", "small", path, "/big.bin");
    assert_error(&p, 1, "No space left on device");
    proc_free(&p);
    free(ok(SBX("volume", "rm", "small", "plain")));
    free(big);
}
END_TEST

/* Secrets: the values reach sandboxes (run --secret) and processes (exec
 * --secret) and no output of sbx shows them. */
START_TEST(test_secrets)
{
    static const char *const value = "s3cret-Value-7f3a";
    char kv[64];
    const char *leaks[8];
    size_t n = 0;
    struct proc p;
    char *out, *id;
    json_t *j;

    snprintf(kv, sizeof(kv), "API_KEY=%s", value);
    setenv("SBX_TEST_TOKEN", "tok-from-env", 1);
    out = ok(SBX("secret", "create", "api", kv, "--from-env", "SBX_TEST_TOKEN"));
    unsetenv("SBX_TEST_TOKEN");
    ck_assert_str_eq(out, "api\n");
    free(out);
    out = ok(SBX_IN("# a comment\n\nFROM_FILE=file-val\n", "secret", "create", "filed",
                    "--env-file", "-"));
    ck_assert_str_eq(out, "filed\n");
    free(out);

    out = ok(SBX("secret", "ls", "-q"));
    ck_assert_str_eq(out, "api\nfiled\n");
    free(out);
    leaks[n++] = out = ok(SBX("secret", "ls"));
    ck_assert_msg(strstr(out, "NAME") && strstr(out, "UPDATED") && strstr(out, "api") &&
                      strstr(out, "filed"),
                  "%s", out);
    leaks[n++] = out = ok(SBX("secret", "ls", "--json"));
    j = parse(out);
    ck_assert_int_eq(json_array_size(j), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "name")), "api");
    json_decref(j);

    /* In a sandbox, and in one exec beside it. */
    p = SBX("run", "--image", "busybox", "--secret", "api", "--", "sh", "-c",
            "echo $API_KEY $SBX_TEST_TOKEN");
    ck_assert_int_eq(p.status, 0);
    {
        char want[64];
        snprintf(want, sizeof(want), "%s tok-from-env\n", value);
        ck_assert_str_eq(p.o.data, want);
    }
    proc_free(&p);
    id = RUN_D("--secret", "api", "--name", "with-secret");
    out = ok(SBX("exec", "--secret", "filed", id, "--", "sh", "-c", "echo $FROM_FILE"));
    ck_assert_str_eq(out, "file-val\n");
    free(out);
    out = ok(SBX("exec", id, "--", "sh", "-c", "echo ${FROM_FILE:-unset}"));
    ck_assert_str_eq(out, "unset\n");
    free(out);
    /* --env overrides a secret's variable. */
    out = ok(SBX("exec", "--secret", "filed", "-e", "FROM_FILE=mine", id, "--", "sh", "-c",
                 "echo $FROM_FILE"));
    ck_assert_str_eq(out, "mine\n");
    free(out);
    leaks[n++] = ok(SBX("inspect", id));
    leaks[n++] = ok(SBX("inspect", "--json", id));
    leaks[n++] = ok(SBX("ps", "--json"));
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(!strstr(leaks[i], value), "output shows the secret: %s", leaks[i]);
        free((char *)leaks[i]);
    }

    /* create replaces: the old variables go. */
    free(ok(SBX("secret", "create", "api", "OTHER=1")));
    p = SBX("run", "--image", "busybox", "--secret", "api", "--", "sh", "-c",
            "echo ${API_KEY:-gone} $OTHER");
    ck_assert_int_eq(p.status, 0);
    ck_assert_str_eq(p.o.data, "gone 1\n");
    proc_free(&p);

    out = ok(SBX("secret", "rm", "api", "filed"));
    ck_assert_str_eq(out, "api\nfiled\n");
    free(out);
    out = ok(SBX("secret", "ls", "-q"));
    ck_assert_str_eq(out, "");
    free(out);
    p = SBX("secret", "rm", "api");
    assert_error(&p, 1, "no secret `api`");
    proc_free(&p);
    p = SBX("run", "--image", "busybox", "--secret", "api", "--", "true");
    assert_error(&p, 125, "no secret `api`");
    proc_free(&p);
    p = SBX("exec", "--secret", "api", id, "--", "true");
    assert_error(&p, 125, "no secret `api`");
    proc_free(&p);
    /* The daemon's own checks, quoted (the key only). */
    p = SBX("secret", "create", "bad", "1KEY=hidden-value");
    assert_error(&p, 1, "1KEY");
    ck_assert_msg(!strstr(p.e.data, "hidden-value"), "%s", p.e.data);
    proc_free(&p);
    free(id);
}
END_TEST

/* --mount: only what the daemon's config allows, read-only by default. */
START_TEST(test_run_mounts)
{
    char dir[128], cfg[256], file[256], ro[256], rw[256];
    struct proc p;

    snprintf(dir, sizeof(dir), "%s/host", dl_dir);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    snprintf(file, sizeof(file), "%s/f.txt", dir);
    write_file(file, "on the host\n", 12, 0644);
    snprintf(cfg, sizeof(cfg), "{\"host_mounts\":[{\"path\":\"%s\",\"writable\":true}]}", dir);
    dl_restart_with_config(cfg);

    snprintf(ro, sizeof(ro), "%s:/ro", dir);
    snprintf(rw, sizeof(rw), "%s:/rw:rw", dir);
    p = SBX("run", "--image", "busybox", "--mount", ro, "--mount", rw, "--", "sh", "-c",
            "cat /ro/f.txt; touch /ro/x 2>/dev/null || echo refused; echo w > /rw/w.txt");
    ck_assert_msg(p.status == 0, "status %d: %s", p.status, p.e.data);
    ck_assert_str_eq(p.o.data, "on the host\nrefused\n");
    proc_free(&p);
    snprintf(file, sizeof(file), "%s/w.txt", dir);
    ck_assert_int_eq(access(file, F_OK), 0);
    p = SBX("run", "--image", "busybox", "--mount", "/etc:/x", "--", "true");
    assert_error(&p, 125, "host_mounts");
    proc_free(&p);
}
END_TEST

/* ---- images and snapshots ---- */

/* The id sbx printed on stdout (one line), checked and copied into id. */
static void take_image_id(const char *out, char *id, size_t size)
{
    ck_assert_msg(strlen(out) == 26 && !strncmp(out, "im-", 3) && out[25] == '\n',
                  "not an image id: [%s]", out);
    snprintf(id, size, "%.25s", out);
}

/* The last line of text (without its newline) is in *ret. */
static void last_line(const char *text, char *ret, size_t size)
{
    size_t n = strlen(text);
    const char *start;

    while (n > 0 && text[n - 1] == '\n')
        n--;
    for (start = text + n; start > text && start[-1] != '\n'; start--)
        ;
    snprintf(ret, size, "%.*s", (int)(text + n - start), start);
}

/* The subcommands' help and the mistakes caught before any request. */
START_TEST(test_image_usage)
{
    static const char *const subs[] = {"ls", "build", "logs", "inspect", "rm", "export", "import"};
    char path[256];
    struct proc p;
    char *out;

    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        char want[64];
        out = ok(SBX("image", "--help"));
        ck_assert_msg(strstr(out, subs[i]), "sbx image --help lacks %s: [%s]", subs[i], out);
        free(out);
        out = ok(SBX("image", subs[i], "--help"));
        snprintf(want, sizeof(want), "usage: sbx image %s", subs[i]);
        ck_assert_msg(!strncmp(out, want, strlen(want)), "[%s]", out);
        free(out);
    }
    out = ok(SBX("help", "snapshot"));
    ck_assert_msg(!strncmp(out, "usage: sbx snapshot", 19), "[%s]", out);
    free(out);
    p = SBX("image");
    ck_assert_int_eq(p.status, 2);
    ck_assert_msg(strstr(p.e.data, "usage: sbx image"), "[%s]", p.e.data);
    proc_free(&p);
    p = SBX("image", "frobnicate");
    assert_error(&p, 2, "no command `frobnicate`");
    proc_free(&p);
    p = SBX("image", "build");
    assert_error(&p, 2, "nothing to build");
    proc_free(&p);
    p = SBX("image", "build", "--base", "busybox", "context-dir");
    assert_error(&p, 2, "unexpected argument `context-dir`");
    proc_free(&p);
    p = SBX("image", "build", "--bogus");
    assert_error(&p, 2, "--bogus");
    proc_free(&p);
    p = SBX("image", "build", "--run", "true", "--copy", "src:dst");
    assert_error(&p, 2, "--copy `src:dst`: expected SRC:/DST");
    proc_free(&p);
    p = SBX("image", "build", "--env", "NOVALUE");
    assert_error(&p, 2, "expected KEY=VALUE");
    proc_free(&p);
    p = SBX("image", "build", "--run", "true", "--index-url", "http://127.0.0.1:1/simple");
    assert_error(&p, 2, "go with --pip");
    proc_free(&p);
    snprintf(path, sizeof(path), "%s/no-such-Dockerfile", dl_dir);
    p = SBX("image", "build", "-f", path);
    assert_error(&p, 1, "No such file");
    proc_free(&p);
    /* The Dockerfile's steps run after the options' steps: a step after -f
     * would not run where it was written. */
    snprintf(path, sizeof(path), "%s/Dockerfile", dl_dir);
    write_file(path, "FROM busybox\n", 13, 0644);
    p = SBX("image", "build", "-f", path, "--run", "true");
    assert_error(&p, 2, "--run comes after -f");
    proc_free(&p);
    p = SBX("image", "rm");
    assert_error(&p, 2, "no IMAGE");
    proc_free(&p);
    p = SBX("image", "logs");
    assert_error(&p, 2, "exactly one IMAGE");
    proc_free(&p);
    p = SBX("image", "inspect", "a/b");
    assert_error(&p, 2, "image `a/b`");
    proc_free(&p);
    p = SBX("image", "export");
    assert_error(&p, 2, "give IMAGE");
    proc_free(&p);
    p = SBX("image", "import");
    assert_error(&p, 2, "give one FILE");
    proc_free(&p);
    p = SBX("snapshot");
    assert_error(&p, 2, "exactly one SANDBOX");
    proc_free(&p);
    p = SBX("snapshot", "a", "b");
    assert_error(&p, 2, "exactly one SANDBOX");
    proc_free(&p);
}
END_TEST

/* Modal's pattern through sbx: a recipe of steps on busybox is built (the
 * log on stderr, the id on stdout) and run; the same recipe again is the
 * same image at once; -d prints the id before the build ends and logs -f
 * follows it; ls, inspect and logs find the image, by a prefix too. */
START_TEST(test_image_build_and_run)
{
    char id[64], id2[64], prefix[16];
    double t0;
    struct proc p;
    char *out;
    json_t *j;
    size_t i;
    bool found = false;

    p = SBX("image", "build", "--base", "busybox", "--run", "echo hi > /f", "--env", "A=b");
    ck_assert_msg(p.status == 0, "status %d: %s", p.status, p.e.data);
    take_image_id(p.o.data, id, sizeof(id));
    ck_assert_msg(strstr(p.e.data, "==> [1/2] run") && strstr(p.e.data, "==> [2/2] env") &&
                      strstr(p.e.data, "==> done: ") && strstr(p.e.data, id),
                  "the log: [%s]", p.e.data);
    proc_free(&p);
    out = ok(SBX("run", "--image", id, "--", "cat", "/f"));
    ck_assert_str_eq(out, "hi\n");
    free(out);
    out = ok(SBX("run", "--image", id, "--", "sh", "-c", "echo $A"));
    ck_assert_str_eq(out, "b\n");
    free(out);

    /* The same recipe: the same image, at once, with nothing to show. */
    t0 = dl_now_ms();
    p = SBX("image", "build", "--base", "busybox", "--run", "echo hi > /f", "--env", "A=b");
    ck_assert_msg(p.status == 0, "status %d: %s", p.status, p.e.data);
    ck_assert_msg(dl_now_ms() - t0 < 2000, "built again: %.0f ms", dl_now_ms() - t0);
    take_image_id(p.o.data, id2, sizeof(id2));
    ck_assert_str_eq(id2, id);
    ck_assert_str_eq(p.e.data, "");
    proc_free(&p);
    /* The order of the command line is the recipe's. */
    p = SBX("image", "build", "--base", "busybox", "--env", "A=b", "--run", "echo hi > /f");
    ck_assert_msg(p.status == 0, "status %d: %s", p.status, p.e.data);
    take_image_id(p.o.data, id2, sizeof(id2));
    ck_assert_str_ne(id2, id);
    proc_free(&p);

    out = ok(SBX("image", "logs", id));
    ck_assert_msg(strstr(out, "==> [1/2] run") && strstr(out, "==> done: "), "[%s]", out);
    free(out);
    snprintf(prefix, sizeof(prefix), "%.8s", id + 3); /* without "im-" */
    out = ok(SBX("image", "inspect", prefix));
    j = parse(out);
    ck_assert_str_eq(json_string_value(json_object_get(j, "image_id")), id);
    ck_assert_str_eq(json_string_value(json_object_get(j, "state")), "ready");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "layers")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "recipe"), "base")),
                     "busybox");
    json_decref(j);
    free(out);
    out = ok(SBX("image", "inspect", id, "busybox"));
    j = parse(out);
    ck_assert_int_eq(json_array_size(j), 2);
    json_decref(j);
    free(out);

    /* Listed, with the system's images. */
    out = ok(SBX("image", "ls"));
    ck_assert_msg(strstr(out, "IMAGE") && strstr(out, "STATE") && strstr(out, "LAYERS") &&
                      strstr(out, "CREATED") && strstr(out, id) && strstr(out, "ready") &&
                      strstr(out, "busybox"),
                  "%s", out);
    free(out);
    out = ok(SBX("image", "ls", "-q"));
    ck_assert_msg(strstr(out, id) && strstr(out, "busybox\n") && !strstr(out, "IMAGE"), "%s", out);
    free(out);
    out = ok(SBX("image", "ls", "--json"));
    j = parse(out);
    ck_assert(json_is_array(j));
    for (i = 0; i < json_array_size(j); i++) {
        json_t *v = json_array_get(j, i);
        if (!strcmp(json_string_value(json_object_get(v, "image_id")) ?: "", id)) {
            ck_assert_str_eq(json_string_value(json_object_get(v, "state")), "ready");
            found = true;
        }
    }
    ck_assert_msg(found, "%s", out);
    json_decref(j);
    free(out);

    /* -d: the id at once; logs -f follows the build to its end. */
    t0 = dl_now_ms();
    out = ok(SBX("image", "build", "-d", "--base", id, "--run", "sleep 1; echo later > /g"));
    ck_assert_msg(dl_now_ms() - t0 < 1000, "-d waited %.0f ms", dl_now_ms() - t0);
    take_image_id(out, id2, sizeof(id2));
    free(out);
    out = ok(SBX("image", "logs", "-f", id2));
    ck_assert_msg(strstr(out, "==> done: "), "[%s]", out);
    free(out);
    out = ok(SBX("run", "--image", id2, "--", "cat", "/f", "/g"));
    ck_assert_str_eq(out, "hi\nlater\n");
    free(out);
    /* -q: only the id. */
    p = SBX("image", "build", "-q", "--base", "busybox", "--workdir", "/w", "--run", "pwd > here");
    ck_assert_msg(p.status == 0, "status %d: %s", p.status, p.e.data);
    ck_assert_str_eq(p.e.data, "");
    take_image_id(p.o.data, id2, sizeof(id2));
    proc_free(&p);
    out = ok(SBX("run", "--image", id2, "--", "cat", "here"));
    ck_assert_str_eq(out, "/w\n");
    free(out);

    p = SBX("image", "logs", "im-nope");
    assert_error(&p, 1, "no image `im-nope`");
    proc_free(&p);
    p = SBX("image", "build", "--base", "no-such-image", "--run", "true");
    assert_error(&p, 1, "no-such-image");
    proc_free(&p);
}
END_TEST

/* A Dockerfile written by the test (COPY from a host path the config
 * allows, and CMD), from a file and from stdin; --copy does the same. */
START_TEST(test_image_dockerfile)
{
    char ctx[128], cfg[256], path[256], df[1024], copy[256], id[64], id2[64];
    struct proc p;
    char *out;

    snprintf(ctx, sizeof(ctx), "%s/ctx", dl_dir);
    ck_assert_int_eq(mkdir(ctx, 0755), 0);
    snprintf(path, sizeof(path), "%s/file.txt", ctx);
    write_file(path, "copied\n", 7, 0644);
    snprintf(cfg, sizeof(cfg), "{\"host_mounts\":[{\"path\":\"%s\"}]}", ctx);
    dl_restart_with_config(cfg);

    snprintf(df, sizeof(df),
             "FROM busybox\n"
             "# a comment\n"
             "RUN echo built > /built.txt\n"
             "ENV GREETING=\"hello world\"\n"
             "WORKDIR /srv\n"
             "COPY %s /srv/app\n"
             "CMD [\"sh\", \"-c\", \"echo $GREETING; pwd; cat /built.txt app/file.txt\"]\n",
             ctx);
    snprintf(path, sizeof(path), "%s/Dockerfile", dl_dir);
    write_file(path, df, strlen(df), 0644);
    p = SBX("image", "build", "-f", path);
    ck_assert_msg(p.status == 0, "status %d: %s", p.status, p.e.data);
    take_image_id(p.o.data, id, sizeof(id));
    ck_assert_msg(strstr(p.e.data, "copy") && strstr(p.e.data, "==> done: "), "[%s]", p.e.data);
    proc_free(&p);
    /* The image's CMD runs. */
    out = ok(SBX("run", "--image", id));
    ck_assert_str_eq(out, "hello world\n/srv\nbuilt\ncopied\n");
    free(out);
    /* From stdin: the same recipe. */
    p = SBX_IN(df, "image", "build", "-f", "-");
    ck_assert_msg(p.status == 0, "status %d: %s", p.status, p.e.data);
    take_image_id(p.o.data, id2, sizeof(id2));
    ck_assert_str_eq(id2, id);
    proc_free(&p);
    /* Steps before -f run first. */
    p = SBX("image", "build", "--run", "echo first > /first.txt", "-f", path);
    ck_assert_msg(p.status == 0, "status %d: %s", p.status, p.e.data);
    take_image_id(p.o.data, id2, sizeof(id2));
    ck_assert_msg(strstr(p.e.data, "==> [1/6] run \"echo first"), "[%s]", p.e.data);
    proc_free(&p);
    out = ok(SBX("run", "--image", id2, "--", "cat", "/first.txt"));
    ck_assert_str_eq(out, "first\n");
    free(out);

    /* --copy SRC:DST, and a copy the config does not allow. */
    snprintf(copy, sizeof(copy), "%s/file.txt:/opt/x.txt", ctx);
    out = ok(SBX("image", "build", "-q", "--base", "busybox", "--copy", copy));
    take_image_id(out, id2, sizeof(id2));
    free(out);
    out = ok(SBX("run", "--image", id2, "--", "cat", "/opt/x.txt"));
    ck_assert_str_eq(out, "copied\n");
    free(out);
    p = SBX("image", "build", "--base", "busybox", "--copy", "/etc/hostname:/x");
    assert_error(&p, 1, "host_mounts");
    proc_free(&p);
    /* A Dockerfile the daemon refuses: its line named. */
    write_file(path, "FROM busybox\nEXPOSE 80\n", 23, 0644);
    p = SBX("image", "build", "-f", path);
    assert_error(&p, 1, "line 2");
    proc_free(&p);
}
END_TEST

/* A step that fails: sbx exits 1 with the daemon's error as its last line,
 * after the log (or, with -q, the log's end); the image is listed as
 * failed and cannot be run. */
START_TEST(test_image_build_failure)
{
    char id[64], line[512];
    struct proc p;
    char *out;
    json_t *j;

    p = SBX("image", "build", "--base", "busybox", "--run", "echo about to fail; exit 3");
    ck_assert_msg(p.status == 1, "status %d: %s", p.status, p.e.data);
    ck_assert_str_eq(p.o.data, "");
    ck_assert_msg(strstr(p.e.data, "about to fail\n"), "[%s]", p.e.data);
    last_line(p.e.data, line, sizeof(line));
    ck_assert_msg(!strncmp(line, "sbx: the build of im-", 21) && strstr(line, "exited with 3"),
                  "[%s]", line);
    snprintf(id, sizeof(id), "%.25s", line + 18);
    proc_free(&p);
    p = SBX("image", "build", "-q", "--base", "busybox", "--run", "echo about to fail; exit 3");
    ck_assert_int_eq(p.status, 1);
    ck_assert_str_eq(p.o.data, "");
    ck_assert_msg(strstr(p.e.data, "about to fail\n"), "[%s]", p.e.data);
    last_line(p.e.data, line, sizeof(line));
    ck_assert_msg(strstr(line, "sbx: the build of ") && strstr(line, "exited with 3"), "[%s]",
                  line);
    proc_free(&p);

    out = ok(SBX("image", "ls"));
    ck_assert_msg(strstr(out, id) && strstr(out, "failed"), "%s", out);
    free(out);
    out = ok(SBX("image", "inspect", id));
    j = parse(out);
    ck_assert_str_eq(json_string_value(json_object_get(j, "state")), "failed");
    ck_assert(strstr(json_string_value(json_object_get(j, "error")), "exited with 3"));
    json_decref(j);
    free(out);
    p = SBX("run", "--image", id, "--", "true");
    assert_error(&p, 125, "failed to build");
    proc_free(&p);
    out = ok(SBX("image", "rm", id));
    snprintf(line, sizeof(line), "%s\n", id);
    ck_assert_str_eq(out, line);
    free(out);
}
END_TEST

/* sbx snapshot of a sandbox (by name) after an exec wrote a file: a new
 * image that has it.  sbx image rm refuses an image a sandbox uses (and
 * the system's), then deletes it. */
START_TEST(test_snapshot_and_image_rm)
{
    char snap[64], want[64];
    char *id, *user, *out;
    struct proc p;

    id = RUN_D("--name", "snapme");
    free(ok(SBX("exec", id, "--", "sh", "-c", "echo snap > /snap.txt")));
    out = ok(SBX("snapshot", "snapme"));
    take_image_id(out, snap, sizeof(snap));
    free(out);
    out = ok(SBX("run", "--image", snap, "--", "cat", "/snap.txt"));
    ck_assert_str_eq(out, "snap\n");
    free(out);
    /* The sandbox runs on. */
    out = ok(SBX("exec", id, "--", "cat", "/snap.txt"));
    ck_assert_str_eq(out, "snap\n");
    free(out);

    user = RUN_D("--image", snap);
    p = SBX("image", "rm", snap);
    assert_error(&p, 1, "is in use by sb-");
    ck_assert_msg(strstr(p.e.data, user) && strstr(p.e.data, "sbx terminate"), "[%s]", p.e.data);
    proc_free(&p);
    free(ok(SBX("terminate", user, id)));
    out = ok(SBX("image", "rm", snap));
    snprintf(want, sizeof(want), "%s\n", snap);
    ck_assert_str_eq(out, want);
    free(out);
    out = ok(SBX("image", "ls", "-q"));
    ck_assert_msg(!strstr(out, snap), "%s", out);
    free(out);

    p = SBX("image", "rm", snap);
    assert_error(&p, 1, "no image");
    proc_free(&p);
    p = SBX("image", "rm", "busybox");
    assert_error(&p, 1, "the system's");
    proc_free(&p);
    /* A finished sandbox has no files to snapshot. */
    p = SBX("snapshot", id);
    assert_error(&p, 1, "has finished");
    proc_free(&p);
    p = SBX("snapshot", "no-such-sandbox");
    assert_error(&p, 1, "no sandbox `no-such-sandbox`");
    proc_free(&p);
    free(user);
    free(id);
}
END_TEST

/* One case per test, so that CK_RUN_CASE=test_name runs one alone. */
static void add(Suite *s, const char *name, const TTest *test)
{
    TCase *tc = tcase_create(name);

    tcase_add_checked_fixture(tc, dl_setup, dl_teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}
#define ADD(s, t) add(s, #t, t)

int main(void)
{
    Suite *s = suite_create("cli");
    SRunner *sr;
    int failed, r;

    sbx_path = getenv("SBX_CLI") ? getenv("SBX_CLI") : "./sbx";
    if (access(sbx_path, X_OK) < 0) {
        printf("SKIP: no sbx at %s (set SBX_CLI)\n", sbx_path);
        return 77;
    }
    r = dl_init("cli");
    if (r)
        return r;
    ADD(s, test_help_and_usage_errors);
    ADD(s, test_host_errors_and_info);
    ADD(s, test_tunnels);
    ADD(s, test_tcp_and_token);
    ADD(s, test_run_output_and_returncodes);
    ADD(s, test_run_stdin_large);
    ADD(s, test_run_detach_names_tags_ps);
    ADD(s, test_exec);
    ADD(s, test_sandbox_resolution);
    ADD(s, test_terminate_wait_rm);
    ADD(s, test_run_attached_terminated_and_interrupted);
    ADD(s, test_logs_events_stats_tags);
    ADD(s, test_cp_both_ways);
    ADD(s, test_volume_secret_usage);
    ADD(s, test_volume_round_trip);
    ADD(s, test_volume_size_cap);
    ADD(s, test_secrets);
    ADD(s, test_run_mounts);
    ADD(s, test_image_usage);
    ADD(s, test_image_build_and_run);
    ADD(s, test_image_dockerfile);
    ADD(s, test_image_build_failure);
    ADD(s, test_snapshot_and_image_rm);
    ADD(s, test_exec_survives_daemon_restart);
    ADD(s, test_run_daemon_gone);
    ADD(s, test_tty_exec_raw_resize_restore);
    ADD(s, test_tty_ctrl_c_goes_to_the_sandbox);
    ADD(s, test_tty_sandbox_terminated_mid_session);
    ADD(s, test_tty_signals_restore);
    ADD(s, test_tty_stop_and_continue);
    ADD(s, test_tty_daemon_gone);
    ADD(s, test_tty_run_and_shell);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    dl_final_sweep();
    return failed ? 1 : 0;
}
