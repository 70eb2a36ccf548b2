/* sbx-probe — a static program the runtime tests run inside sandboxes to
 * look at the sandbox from the inside.  It only uses libc, so it runs on any
 * image; every subcommand prints `key value` lines on stdout.
 *
 *   seccomp          each syscall the filter must refuse: `<name> <ERRNO|OK>`
 *   int80 getpid     i386 getpid through int $0x80: `int80_getpid <pid|ERRNO>`
 *   int80 unshare    i386 unshare(CLONE_NEWUSER): `int80_unshare <OK|ERRNO>`
 *   x32 unshare      x32 unshare(CLONE_NEWUSER): `x32_unshare <OK|ERRNO>`
 *                    (in a sandbox these three die of SIGSYS before printing)
 *   caps             CapInh/CapPrm/CapEff/CapBnd/CapAmb, NoNewPrivs, Seccomp
 *   fds              `fd N` for every open fd
 *   ids              uid, gid, pid, ppid, hostname
 *   hog MIB          allocates and touches MIB MiB, `allocated N` per MiB
 *   forkbomb         forks until fork fails: `forked N`, `error ERRNO`
 *   spin SECONDS     burns CPU for SECONDS of wall time: `cpu_ms N wall_ms M`
 *   sleep SECONDS    sleeps
 *   exit N           exits with N
 *   kill-self SIG    raises SIG
 *   write-files PATH `PATH OK|ERRNO` for a write to PATH
 *   read PATH        `PATH OK|ERRNO` for a read of PATH
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "syscalls.h"

static const char *errno_name(int e)
{
    static char buf[16];
    const char *name = strerrorname_np(e);

    if (name)
        return name;
    snprintf(buf, sizeof(buf), "E%d", e);
    return buf;
}

static void print_result(const char *what, long r, int e)
{
    printf("%s %s\n", what, r < 0 ? errno_name(e) : "OK");
}

/* Makes one blocked call; returns 0 when it succeeded, else its errno. */
static int try_blocked(const struct blocked_call *c)
{
    long r;

    errno = 0;
    r = syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);
    if (r < 0)
        return errno;
    /* It got through: undo what it made. */
    if (c->nr == SYS_clone) {
        if (r == 0)
            _exit(0);
        waitpid((pid_t)r, NULL, 0);
    } else if (c->nr == SYS_userfaultfd || c->nr == SYS_fanotify_init || c->nr == SYS_socket) {
        close((int)r);
    }
    return 0;
}

/* Only native syscalls here: the filter kills a process that makes an i386
 * or x32 one, which the int80 and x32 subcommands try on their own. */
static int cmd_seccomp(void)
{
    /* vhangup on a controlling terminal would hang it up if the filter
     * were missing; a new session has none. */
    setsid();
    for (size_t i = 0; i < sizeof(blocked_calls) / sizeof(blocked_calls[0]); i++) {
        const struct blocked_call *c = &blocked_calls[i];
        if (c->nr < 0)
            continue;
        int e = try_blocked(c);
        printf("%s %s\n", c->name, e ? errno_name(e) : "OK");
    }
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: sbx-probe seccomp|int80 getpid|int80 unshare|x32 unshare|caps|fds|"
                    "ids|forkbomb|hog MIB|spin S|sleep S|exit N|kill-self SIG|write-files PATH|"
                    "read PATH|net\n");
    return 2;
}

/* One syscall through another ABI.  The sandbox's filter kills the probe
 * before it can print; outside a sandbox the result is printed. */
static int cmd_int80(const char *call)
{
    long r;

    if (strcmp(call, "getpid") == 0) {
        r = int80_syscall(I386_NR_getpid, 0);
        if (r < 0)
            printf("int80_getpid %s\n", errno_name((int)-r));
        else
            printf("int80_getpid %ld\n", r);
    } else if (strcmp(call, "unshare") == 0) {
        r = int80_syscall(I386_NR_unshare, CLONE_NEWUSER);
        printf("int80_unshare %s\n", r < 0 ? errno_name((int)-r) : "OK");
    } else {
        return usage();
    }
    return 0;
}

static int cmd_x32(const char *call)
{
    long r;

    if (strcmp(call, "unshare") != 0)
        return usage();
    r = syscall(__X32_SYSCALL_BIT | SYS_unshare, CLONE_NEWUSER);
    print_result("x32_unshare", r, errno);
    return 0;
}

/* Prints the status lines named in keys, renaming none. */
static int print_status_lines(const char *const *keys, size_t n_keys)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];

    if (!f) {
        printf("error %s\n", errno_name(errno));
        return 1;
    }
    while (fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        for (size_t i = 0; i < n_keys; i++) {
            if (strcmp(line, keys[i]) == 0) {
                char *v = colon + 1;
                v += strspn(v, " \t");
                printf("%s %s", line, v); /* v keeps its newline */
            }
        }
    }
    fclose(f);
    return 0;
}

static int cmd_caps(void)
{
    static const char *const keys[] = {"CapInh", "CapPrm",     "CapEff", "CapBnd",
                                       "CapAmb", "NoNewPrivs", "Seccomp"};
    return print_status_lines(keys, sizeof(keys) / sizeof(keys[0]));
}

static int cmd_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;

    if (!d) {
        printf("error %s\n", errno_name(errno));
        return 1;
    }
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        int fd = atoi(de->d_name);
        if (fd == dirfd(d))
            continue;
        printf("fd %d\n", fd);
    }
    closedir(d);
    return 0;
}

static int cmd_ids(void)
{
    char host[256] = "";

    gethostname(host, sizeof(host) - 1);
    printf("uid %u\ngid %u\npid %d\nppid %d\nhostname %s\n", getuid(), getgid(), getpid(),
           getppid(), host);
    return 0;
}

static int cmd_hog(long mib)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (long i = 1; i <= mib; i++) {
        char *p = malloc(1 << 20);
        if (!p) {
            printf("error ENOMEM\n");
            return 1;
        }
        /* Touch every page so the memory is really charged. */
        for (size_t off = 0; off < (1 << 20); off += 4096)
            p[off] = (char)i;
        printf("allocated %ld\n", i);
        fflush(stdout);
    }
    return 0;
}

static int cmd_forkbomb(void)
{
    size_t cap = 1024, n = 0;
    pid_t *kids = malloc(cap * sizeof(*kids));
    int err = 0;

    if (!kids)
        return 1;
    for (;;) {
        pid_t pid = fork();
        if (pid < 0) {
            err = errno;
            break;
        }
        if (pid == 0) {
            pause();
            _exit(0);
        }
        if (n == cap) {
            pid_t *more = realloc(kids, 2 * cap * sizeof(*kids));
            if (!more) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                err = ENOMEM;
                break;
            }
            kids = more;
            cap *= 2;
        }
        kids[n++] = pid;
    }
    printf("forked %zu\nerror %s\n", n, errno_name(err));
    fflush(stdout);
    for (size_t i = 0; i < n; i++)
        kill(kids[i], SIGKILL);
    for (size_t i = 0; i < n; i++)
        waitpid(kids[i], NULL, 0);
    free(kids);
    return 0;
}

static long ms_between(const struct timespec *a, const struct timespec *b)
{
    return (b->tv_sec - a->tv_sec) * 1000L + (b->tv_nsec - a->tv_nsec) / 1000000L;
}

static int cmd_spin(double seconds)
{
    struct timespec start, now, cpu;
    volatile unsigned long sink = 0;

    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        for (int i = 0; i < 100000; i++)
            sink += (unsigned long)i;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (ms_between(&start, &now) < (long)(seconds * 1000));
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    printf("cpu_ms %ld wall_ms %ld\n", cpu.tv_sec * 1000L + cpu.tv_nsec / 1000000L,
           ms_between(&start, &now));
    return 0;
}

static int cmd_sleep(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return 0;
}

static int cmd_write(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int e;

    if (fd < 0) {
        print_result(path, -1, errno);
        return 0;
    }
    ssize_t n = write(fd, "sbx-probe\n", 10);
    e = errno;
    if (close(fd) < 0 && n >= 0) {
        n = -1;
        e = errno;
    }
    print_result(path, n < 0 ? -1 : 0, e);
    return 0;
}

static int cmd_read(const char *path)
{
    char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        print_result(path, -1, errno);
        return 0;
    }
    ssize_t n = read(fd, buf, sizeof(buf));
    print_result(path, n, errno);
    close(fd);
    return 0;
}

/* What the sandbox may do with its network namespace: bind a privileged
 * port, open an ICMP echo socket, open a raw socket, take lo down. */
static int cmd_net(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
    struct ifreq ifr = {0};
    char ns[64] = "";
    int fd, r;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    r = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&a, sizeof(a));
    print_result("bind80", r, errno);
    if (fd >= 0)
        close(fd);
    fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    print_result("ping_socket", fd, errno);
    if (fd >= 0)
        close(fd);
    fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    print_result("raw_socket", fd, errno);
    if (fd >= 0)
        close(fd);
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    strcpy(ifr.ifr_name, "lo");
    r = ioctl(fd, SIOCGIFFLAGS, &ifr);
    printf("lo_up %d\n", r == 0 && (ifr.ifr_flags & IFF_UP) ? 1 : 0);
    ifr.ifr_flags &= ~IFF_UP;
    r = ioctl(fd, SIOCSIFFLAGS, &ifr);
    print_result("lo_down", r, errno);
    close(fd);
    r = (int)readlink("/proc/self/ns/net", ns, sizeof(ns) - 1);
    printf("netns %s\n", r > 0 ? ns : "?");
    return 0;
}

int main(int argc, char **argv)
{
    int r;

    if (argc < 2)
        return usage();
    const char *cmd = argv[1], *arg = argc > 2 ? argv[2] : NULL;

    if (strcmp(cmd, "seccomp") == 0)
        r = cmd_seccomp();
    else if (strcmp(cmd, "int80") == 0 && arg)
        r = cmd_int80(arg);
    else if (strcmp(cmd, "x32") == 0 && arg)
        r = cmd_x32(arg);
    else if (strcmp(cmd, "caps") == 0)
        r = cmd_caps();
    else if (strcmp(cmd, "fds") == 0)
        r = cmd_fds();
    else if (strcmp(cmd, "ids") == 0)
        r = cmd_ids();
    else if (strcmp(cmd, "forkbomb") == 0)
        r = cmd_forkbomb();
    else if (strcmp(cmd, "hog") == 0 && arg)
        r = cmd_hog(atol(arg));
    else if (strcmp(cmd, "spin") == 0 && arg)
        r = cmd_spin(atof(arg));
    else if (strcmp(cmd, "sleep") == 0 && arg)
        r = cmd_sleep(atof(arg));
    else if (strcmp(cmd, "exit") == 0 && arg)
        r = atoi(arg);
    else if (strcmp(cmd, "kill-self") == 0 && arg) {
        fflush(stdout);
        raise(atoi(arg));
        r = 0;
    } else if (strcmp(cmd, "write-files") == 0 && arg)
        r = cmd_write(arg);
    else if (strcmp(cmd, "read") == 0 && arg)
        r = cmd_read(arg);
    else if (strcmp(cmd, "net") == 0)
        r = cmd_net();
    else
        return usage();

    fflush(stdout);
    return r;
}
