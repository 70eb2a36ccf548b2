/* machine.c — what this machine itself costs, for bench/run to print beside
 * the sandboxes' numbers: the floors no sandbox runtime gets under.
 *
 *   machine [--memcg] [--spawn PROGRAM]
 *
 *   fault      one first touch of an anonymous 4 KiB page (a minor fault),
 *              in 32 MiB runs with huge pages off: every process a sandbox
 *              start makes pays tens of these.
 *   wakeup     a round trip through two pipes between two processes, both
 *              on one CPU and on two; and on two after 100 ms of quiet, when
 *              an idle vCPU has halted: every request crosses 5–10 such
 *              hand-offs (client, daemon, monitor, init, the process).
 *   spawn      (--spawn PROGRAM) posix_spawn() of PROGRAM (no arguments
 *              but its name, stdio on /dev/null) and its reaping: what a
 *              sandbox's exec pays before anything of the runtime's, e.g.
 *              the busybox image's static /bin/true.
 *   memcg      (--memcg) the unreclaimable kernel memory of one new, empty
 *              memory cgroup, made under this process's own cgroup: the
 *              floor of a sandbox's kernel memory, whatever it runs.  Most of
 *              it is the shrinker map (1 KiB per 64 shrinkers, sized by the
 *              most shrinkers this kernel has had at once since boot).
 *
 * Each row: "floor-NAME n=… median=…ms p99=…ms …" or a KiB figure.
 */
#include "kernel.h"
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FAULT_RUN  (32u << 20)
#define FAULT_RUNS 8

static void summary(const char *name, uint64_t *v, size_t n, const char *extra)
{
    qsort(v, n, sizeof(*v), compare_u64);
    printf("%-22s n=%zu median=%.4fms p99=%.4fms min=%.4fms%s%s\n", name, n,
           percentile_ms(v, n, 50), percentile_ms(v, n, 99), (double)v[0] / 1e6, extra ? " " : "",
           extra ? extra : "");
}

/* ns per minor fault, one sample per 32 MiB run. */
static int measure_faults(void)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t v[FAULT_RUNS];

    for (int r = 0; r < FAULT_RUNS; r++) {
        char *p = mmap(NULL, FAULT_RUN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        uint64_t t0;

        if (p == MAP_FAILED) {
            fprintf(stderr, "machine: mmap: %s\n", strerror(errno));
            return -1;
        }
        (void)madvise(p, FAULT_RUN, MADV_NOHUGEPAGE);
        t0 = now_ns();
        for (size_t off = 0; off < FAULT_RUN; off += (size_t)page)
            p[off] = 1;
        v[r] = (now_ns() - t0) / (FAULT_RUN / (size_t)page);
        munmap(p, FAULT_RUN);
    }
    summary("floor-fault", v, FAULT_RUNS, "(one anonymous 4 KiB page touched first)");
    return 0;
}

static int pin(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

/* Round trips through two pipes, the partner pinned to cpu_b; idle_ms of
 * quiet before each one.  -1 where the CPUs cannot be had. */
static int ping_pong(const char *name, int cpu_a, int cpu_b, int n, int idle_ms)
{
    int ab[2], ba[2];
    uint64_t *v = calloc((size_t)n, sizeof(*v));
    pid_t pid;
    char c = 0;
    int status;
    cpu_set_t mine; /* ours before pinning, given back after */

    if (sched_getaffinity(0, sizeof(mine), &mine) < 0 || !v || pipe2(ab, O_CLOEXEC) < 0 ||
        pipe2(ba, O_CLOEXEC) < 0) {
        fprintf(stderr, "machine: pipe: %s\n", strerror(errno));
        free(v);
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "machine: fork: %s\n", strerror(errno));
        free(v);
        return -1;
    }
    if (pid == 0) {
        close(ab[1]);
        close(ba[0]);
        if (pin(cpu_b) < 0)
            _exit(2);
        while (read(ab[0], &c, 1) == 1)
            if (write(ba[1], &c, 1) != 1)
                _exit(1);
        _exit(0);
    }
    close(ab[0]);
    close(ba[1]);
    if (pin(cpu_a) < 0) {
        printf("%-22s not measured: CPU %d is not ours\n", name, cpu_a);
        close(ab[1]);
        close(ba[0]);
        waitpid(pid, &status, 0);
        free(v);
        return 0;
    }
    for (int i = 0; i < n + 10; i++) {
        uint64_t t0;

        if (idle_ms)
            usleep((useconds_t)idle_ms * 1000);
        t0 = now_ns();
        if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
            break;
        if (i >= 10)
            v[i - 10] = now_ns() - t0;
    }
    close(ab[1]);
    close(ba[0]);
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
        printf("%-22s not measured: CPU %d is not ours\n", name, cpu_b);
    else
        summary(name, v, (size_t)n,
                idle_ms ? "(a pipe round trip after 100 ms of quiet)"
                        : "(a pipe round trip between two processes)");
    free(v);
    (void)sched_setaffinity(0, sizeof(mine), &mine);
    return 0;
}

#define SPAWNS 300

/* posix_spawn + waitpid of program, SPAWNS times after 10 to warm up. */
static int measure_spawn(const char *program)
{
    char *const argv[] = {(char *)program, NULL};
    char *const envp[] = {NULL};
    posix_spawn_file_actions_t fa;
    uint64_t v[SPAWNS];
    int r = 0;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    for (int i = 0; i < SPAWNS + 10; i++) {
        uint64_t t0 = now_ns();
        pid_t pid;
        int status, e = posix_spawn(&pid, program, &fa, NULL, argv, envp);

        if (e != 0) {
            fprintf(stderr, "machine: spawn %s: %s\n", program, strerror(e));
            r = -1;
            break;
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "machine: %s did not exit 0\n", program);
            r = -1;
            break;
        }
        if (i >= 10)
            v[i - 10] = now_ns() - t0;
    }
    posix_spawn_file_actions_destroy(&fa);
    if (r == 0)
        summary("floor-spawn", v, SPAWNS, "(posix_spawn of the program and its reaping)");
    return r;
}

/* Bytes in the kernel's slab objects in use, every cache; -1 if
 * /proc/slabinfo cannot be read. */
static long long slab_bytes(void)
{
    size_t n;
    struct slab *sl = read_slabs(&n);
    long long sum = 0;

    if (!sl)
        return -1;
    for (size_t i = 0; i < n; i++)
        sum += sl[i].bytes;
    free(sl);
    return sum;
}

/* Our own memory cgroup's directory, if its children get memory cgroups
 * of their own: always in v1; in v2 when memory is in its subtree_control. */
static int own_memcg_dir(char *dir, size_t size)
{
    bool v2;
    char ctl[PATH_MAX + 64], buf[512] = "";
    FILE *c;

    if (memcg_dir_of(getpid(), dir, size, &v2) < 0)
        return -1;
    if (!v2)
        return 0;
    snprintf(ctl, sizeof(ctl), "%s/cgroup.subtree_control", dir);
    if ((c = fopen(ctl, "re"))) {
        if (!fgets(buf, sizeof(buf), c))
            buf[0] = '\0';
        fclose(c);
    }
    return strstr(buf, "memory") ? 0 : -1;
}

#define MEMCGS 50

static int measure_memcg(void)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    long long before, after;
    int made = 0;

    if (own_memcg_dir(dir, sizeof(dir)) < 0) {
        printf("%-22s not measured: no memory cgroup to make children in\n", "floor-memcg");
        return 0;
    }
    before = slab_bytes();
    for (; made < MEMCGS; made++) {
        snprintf(path, sizeof(path), "%s/sbx-bench-machine-%d-%d", dir, (int)getpid(), made);
        if (mkdir(path, 0755) < 0)
            break;
    }
    after = slab_bytes();
    for (int i = 0; i < made; i++) {
        snprintf(path, sizeof(path), "%s/sbx-bench-machine-%d-%d", dir, (int)getpid(), i);
        (void)rmdir(path);
    }
    if (made < MEMCGS) {
        printf("%-22s not measured: mkdir in %s: %s\n", "floor-memcg", dir, strerror(errno));
        return 0;
    }
    if (before < 0 || after < 0) {
        printf("%-22s not measured: /proc/slabinfo: %s\n", "floor-memcg", strerror(errno));
        return 0;
    }
    printf("%-22s per=%lldKiB (the kernel's slab objects of one new, empty memory cgroup; "
           "mean of %d)\n",
           "floor-memcg", (after - before) / 1024 / MEMCGS, MEMCGS);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"memcg", no_argument, NULL, 'm'},
                                         {"spawn", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool memcg = false;
    const char *spawn_program = NULL;
    int c, ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            memcg = true;
            break;
        case 's':
            spawn_program = optarg;
            break;
        case 'h':
            printf("usage: %s [--memcg] [--spawn PROGRAM]\n", argv[0]);
            return 0;
        default:
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (measure_faults() < 0)
        return 1;
    if (ping_pong("floor-wakeup-one-cpu", 0, 0, 2000, 0) < 0)
        return 1;
    if (ncpu > 1) {
        if (ping_pong("floor-wakeup-two-cpus", 0, 1, 2000, 0) < 0 ||
            ping_pong("floor-wakeup-idle", 0, 1, 20, 100) < 0)
            return 1;
    }
    if (spawn_program && measure_spawn(spawn_program) < 0)
        return 1;
    if (memcg && measure_memcg() < 0)
        return 1;
    return 0;
}
