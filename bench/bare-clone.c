/* bare-clone — the floor under bench/startup, and the timer for its peers.
 *
 *   bare-clone [-w WARMUP] [--summary] N
 *       N times: clone() a child into new user, mount, pid, uts, ipc, net and
 *       cgroup namespaces, exec the host's /bin/true in it, waitpid().  This
 *       is the least any runtime that gives a process those namespaces can
 *       cost; a sandbox runtime pays it plus its rootfs, cgroup and policy.
 *
 *   bare-clone --exec [-w WARMUP] [--summary] N CMD [ARG...]
 *       N times: spawn CMD and wait for it, which must exit 0.  Every
 *       occurrence of "{i}" in an argument is replaced by the iteration
 *       number, so that each run can name a fresh container.  bench/startup
 *       times bwrap, runc and crun with this, so that every peer is timed by
 *       the same clock and none pays for a shell.  It lives here rather than
 *       in sbx-bench-startup because it needs no runtime library: the peers
 *       can be measured even while the runtime does not build.
 *
 * Each iteration is timed with CLOCK_MONOTONIC from just before the clone (or
 * spawn) to just after the wait returns.  Without --summary the samples are
 * printed one per line, in microseconds; WARMUP (default 3) untimed runs
 * come first.  Exits 1 if any run fails, after saying which and why. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

#define BARE_CLONE_FLAGS                                                                           \
    (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |     \
     CLONE_NEWCGROUP)

/* Cap on N: samples are kept in memory and sorted. */
#define MAX_ITERATIONS 1000000

extern char **environ;

static char child_stack[64 * 1024] __attribute__((aligned(16)));

/* Runs in the cloned child, on a copy of the parent's memory (no CLONE_VM),
 * so the static stack is private to it. */
static int clone_child(void *arg)
{
    static char *const argv[] = {"/bin/true", NULL};

    (void)arg;
    execve(argv[0], argv, environ);
    _exit(127);
}

/* Describes a wait status that is not "exited 0" into buf. */
static const char *describe_status(int status, char *buf, size_t size)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, size, "wait status 0x%x", (unsigned)status);
    return buf;
}

/* One clone+exec+wait; returns its duration in ns, or 0 after printing why
 * it failed. */
static uint64_t run_bare_clone(void)
{
    char why[128];
    uint64_t start = now_ns(), end;
    int status;
    pid_t pid;

    pid = clone(clone_child, child_stack + sizeof(child_stack), BARE_CLONE_FLAGS | SIGCHLD, NULL);
    if (pid < 0) {
        fprintf(stderr, "bare-clone: clone: %s\n", strerror(errno));
        return 0;
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "bare-clone: waitpid %d: %s\n", (int)pid, strerror(errno));
            return 0;
        }
    }
    end = now_ns();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bare-clone: /bin/true in new namespaces %s\n",
                describe_status(status, why, sizeof(why)));
        return 0;
    }
    return end - start > 0 ? end - start : 1;
}

/* A command template: argv with "{i}" wherever the iteration number goes.
 * Arguments that hold "{i}" are rewritten into their own buffer, sized once
 * for the longest number, so an iteration allocates nothing. */
struct exec_command {
    char **template;
    char **argv; /* argc + 1 entries, NULL-terminated */
    char **storage;
    size_t argc;
};

#define ITERATION_MARK "{i}"

static int exec_command_init(struct exec_command *c, char **template, size_t argc)
{
    c->template = template;
    c->argc = argc;
    c->argv = calloc(argc + 1, sizeof(char *));
    c->storage = calloc(argc, sizeof(char *));
    if (!c->argv || !c->storage)
        return -ENOMEM;
    for (size_t k = 0; k < argc; k++) {
        size_t marks = 0;

        for (const char *m = strstr(template[k], ITERATION_MARK); m;
             m = strstr(m + 1, ITERATION_MARK))
            marks++;
        c->argv[k] = template[k];
        if (marks == 0)
            continue;
        /* A long has at most 20 characters. */
        c->storage[k] = malloc(strlen(template[k]) + marks * 20 + 1);
        if (!c->storage[k])
            return -ENOMEM;
    }
    return 0;
}

static void exec_command_expand(struct exec_command *c, long iteration)
{
    for (size_t k = 0; k < c->argc; k++) {
        const char *t = c->template[k], *m;
        char *out = c->storage[k];

        if (!out)
            continue;
        while ((m = strstr(t, ITERATION_MARK))) {
            memcpy(out, t, (size_t)(m - t));
            out += m - t;
            out += sprintf(out, "%ld", iteration);
            t = m + strlen(ITERATION_MARK);
        }
        strcpy(out, t);
        c->argv[k] = c->storage[k];
    }
}

/* One spawn+wait of the command; returns ns, or 0 after printing why it
 * failed.  stdin and stdout are /dev/null (devnull), stderr is ours, so a
 * failing peer says why. */
static uint64_t run_exec(struct exec_command *c, long iteration, int devnull)
{
    posix_spawn_file_actions_t fa;
    char why[128];
    uint64_t start, end;
    int status, r;
    pid_t pid;

    exec_command_expand(c, iteration);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, devnull, STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, devnull, STDOUT_FILENO);
    start = now_ns();
    r = posix_spawnp(&pid, c->argv[0], &fa, NULL, c->argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0) {
        fprintf(stderr, "bare-clone: spawn `%s`: %s\n", c->argv[0], strerror(r));
        return 0;
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "bare-clone: waitpid %d: %s\n", (int)pid, strerror(errno));
            return 0;
        }
    }
    end = now_ns();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bare-clone: `%s` (iteration %ld) %s\n", c->argv[0], iteration,
                describe_status(status, why, sizeof(why)));
        return 0;
    }
    return end - start > 0 ? end - start : 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bare-clone [-w WARMUP] [--summary] N\n"
               "       bare-clone --exec [-w WARMUP] [--summary] N CMD [ARG...]\n"
               "Times N runs of /bin/true in fresh namespaces (or of CMD, where \"{i}\"\n"
               "becomes the iteration number) and prints one sample per line in us.\n");
}

static long parse_count(const char *s, const char *what, long min)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > MAX_ITERATIONS) {
        fprintf(stderr, "bare-clone: %s must be an integer in %ld..%d, got `%s`\n", what, min,
                MAX_ITERATIONS, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"exec", no_argument, NULL, 'x'},
        {"summary", no_argument, NULL, 's'},
        {"warmup", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct exec_command cmd = {0};
    bool exec_mode = false, summary = false;
    long n, warmup = 3;
    uint64_t *samples;
    int c, devnull = -1;

    /* "+": stop at the first non-option, so CMD's own options stay CMD's. */
    while ((c = getopt_long(argc, argv, "+w:h", opts, NULL)) != -1) {
        switch (c) {
        case 'x':
            exec_mode = true;
            break;
        case 's':
            summary = true;
            break;
        case 'w':
            warmup = parse_count(optarg, "WARMUP", 0);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc || (exec_mode && optind + 1 >= argc) || (!exec_mode && optind + 1 != argc)) {
        usage(stderr);
        return 2;
    }
    n = parse_count(argv[optind++], "N", 1);
    samples = calloc((size_t)n, sizeof(*samples));
    if (!samples) {
        fprintf(stderr, "bare-clone: out of memory for %ld samples\n", n);
        return 1;
    }

    if (exec_mode) {
        if (exec_command_init(&cmd, argv + optind, (size_t)(argc - optind)) < 0) {
            fprintf(stderr, "bare-clone: out of memory\n");
            return 1;
        }
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0) {
            fprintf(stderr, "bare-clone: open `/dev/null`: %s\n", strerror(errno));
            return 1;
        }
    }

    /* Warm-up runs are numbered after the timed ones, so "{i}" never repeats. */
    for (long i = 0; i < warmup; i++) {
        if ((exec_mode ? run_exec(&cmd, n + i, devnull) : run_bare_clone()) == 0)
            return 1;
    }
    for (long i = 0; i < n; i++) {
        samples[i] = exec_mode ? run_exec(&cmd, i, devnull) : run_bare_clone();
        if (samples[i] == 0)
            return 1;
    }

    if (summary) {
        print_summary(NULL, samples, (size_t)n);
    } else {
        for (long i = 0; i < n; i++)
            printf("%.1f\n", (double)samples[i] / 1e3);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "bare-clone: writing samples: %s\n", strerror(errno));
        return 1;
    }
    free(samples);
    return 0;
}
