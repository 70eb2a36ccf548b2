/* sbx-bench-startup — how long the runtime takes to start a sandbox, run
 * /bin/true in it and see it exit; and, separately, how long tearing it down
 * takes.
 *
 *   sbx-bench-startup [options]
 *
 * The image is loaded once.  Then, N times: sbx_sandbox_create() with the
 * image's layers and env and argv /bin/true, sbx_sandbox_wait() for it to
 * exit (it must exit 0) — that span is the startup sample — and then
 * sbx_sandbox_destroy(), timed on its own as the teardown sample.  Both are
 * CLOCK_MONOTONIC.  WARMUP untimed sandboxes come first, so that one-off
 * costs (the cgroup parent, cold dentries) are not charged to the first sample.
 *
 * Without --summary it prints one startup sample per line in microseconds
 * (and the teardown samples likewise into --teardown-out FILE); with
 * --summary, median/p90/p99/min/max of both.  Exits 1 if any sandbox fails,
 * after saying which and why. */
#include "image.h"
#include "sbx.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

#define DEFAULT_RUN_DIR       "/run/sandboxd-bench"
#define DEFAULT_STATE_DIR     "/var/lib/sandboxd"
#define DEFAULT_CGROUP_PARENT "sandboxd-bench"

/* Cap on N: samples are kept in memory and sorted. */
#define MAX_ITERATIONS 1000000

struct bench_options {
    long iterations;
    long warmup;
    const char *image;
    const char *state_dir;
    const char *run_dir;
    const char *cgroup_parent;
    const char *teardown_out;
    bool no_userns;
    bool summary;
    uint64_t memory_mib;
    long netpool;        /* pre-made network namespaces kept ready; 0: none */
    const char *network; /* BRIDGE,SUBNET: eth0 on a bridge, as the daemon's sandboxes */
    bool exec;           /* time execs into one sandbox instead of starts */
};

static sbx_netpool *netpool;
static long netpool_misses;
static struct sbx_network net;
static bool on_network;

/* Set by SIGINT/SIGTERM: finish the sandbox in hand, destroy it, and stop, so
 * that an interrupted run leaves nothing behind. */
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

static const char *finish_name(enum sbx_finish reason)
{
    switch (reason) {
    case SBX_FINISH_RUNNING:
        return "running";
    case SBX_FINISH_EXITED:
        return "exited";
    case SBX_FINISH_TERMINATED:
        return "terminated";
    case SBX_FINISH_OOM:
        return "OOM-killed";
    }
    return "unknown";
}

/* One sandbox: create, wait, destroy.  Fills *ret_startup_ns and
 * *ret_teardown_ns and returns 0, or prints why it failed and returns -1.
 * Whatever happens, nothing of the sandbox is left behind. */
static int run_one(const struct bench_options *o, const struct sbx_image *img, long iteration,
                   uint64_t *ret_startup_ns, uint64_t *ret_teardown_ns)
{
    static const char *const true_argv[] = {"/bin/true", NULL};
    struct sbx_config cfg = {
        .run_dir = o->run_dir,
        .state_dir = o->state_dir,
        .layers = (const char *const *)img->layers,
        .argv = true_argv,
        .env = (const char *const *)img->env,
        .workdir = img->workdir,
        .no_userns = o->no_userns,
        .limits = {.memory_bytes = o->memory_mib << 20},
        .stdio = {-1, -1, -1},
        .cgroup_parent = o->cgroup_parent,
    };
    struct sbx_exit ex = {0};
    sbx_sandbox *sb = NULL;
    sbx_error err = {0};
    uint64_t start, started, stopped;
    char id[64];
    int r;

    struct sbx_netns ns = {-1, -1, -1, 0};

    snprintf(id, sizeof(id), "bench-%d-%ld", (int)getpid(), iteration);
    cfg.id = id;

    start = now_ns();
    /* Taking a namespace is part of creating the sandbox, and so timed;
     * an empty pool means making one on the way, as without a pool. */
    if (netpool) {
        r = sbx_netpool_take(sbx_netpool_fd(netpool), &ns, &err);
        if (r == 0)
            cfg.netns = &ns;
        else if (r == -EAGAIN)
            netpool_misses++;
        else {
            fprintf(stderr, "sbx-bench-startup: %s\n", err.message);
            return -1;
        }
    }
    /* On the network, a namespace the pool did not have is made here with
     * its eth0, as the daemon's monitor does. */
    if (on_network && !cfg.netns) {
        if (sbx_netns_make(&net, &ns, &err) < 0) {
            fprintf(stderr, "sbx-bench-startup: %s\n", err.message);
            return -1;
        }
        cfg.netns = &ns;
    }
    r = sbx_sandbox_create(&cfg, &sb, &err);
    sbx_netns_close(&ns);
    if (r < 0) {
        fprintf(stderr, "sbx-bench-startup: create `%s`: %s\n", id, err.message);
        /* create undoes its own work; this is in case it could not. */
        if (sbx_sandbox_cleanup(o->run_dir, o->state_dir, o->cgroup_parent, id, &err) < 0)
            fprintf(stderr, "sbx-bench-startup: cleanup `%s`: %s\n", id, err.message);
        return -1;
    }
    r = sbx_sandbox_wait(sb, -1, &ex, &err);
    started = now_ns();
    if (r < 0)
        fprintf(stderr, "sbx-bench-startup: wait `%s`: %s\n", id, err.message);
    else if (r == 0)
        fprintf(stderr, "sbx-bench-startup: wait `%s`: returned before the sandbox finished\n", id);
    else if (ex.reason != SBX_FINISH_EXITED || ex.returncode != 0)
        fprintf(stderr, "sbx-bench-startup: `%s`: /bin/true %s with returncode %d\n", id,
                finish_name(ex.reason), ex.returncode);

    if (sbx_sandbox_destroy(sb, &err) < 0) {
        fprintf(stderr, "sbx-bench-startup: destroy `%s`: %s\n", id, err.message);
        return -1;
    }
    stopped = now_ns();
    if (r != 1 || ex.reason != SBX_FINISH_EXITED || ex.returncode != 0)
        return -1;

    *ret_startup_ns = started - start;
    *ret_teardown_ns = stopped - started;
    return 0;
}

/* --exec: one idle sandbox; each sample is sbx_sandbox_exec() of /bin/true
 * until sbx_process_wait() has its returncode. */
static int run_execs(const struct bench_options *o, const struct sbx_image *img, uint64_t *samples,
                     long *ret_done)
{
    static const char *const true_argv[] = {"/bin/true", NULL};
    struct sbx_config cfg = {
        .run_dir = o->run_dir,
        .state_dir = o->state_dir,
        .layers = (const char *const *)img->layers,
        .env = (const char *const *)img->env,
        .workdir = img->workdir,
        .no_userns = o->no_userns,
        .limits = {.memory_bytes = o->memory_mib << 20},
        .stdio = {-1, -1, -1},
        .cgroup_parent = o->cgroup_parent,
    };
    struct sbx_exec_config ec = {
        .argv = true_argv, .env = (const char *const *)img->env, .stdio = {-1, -1, -1}};
    sbx_sandbox *sb = NULL;
    sbx_error err = {0};
    char id[64];
    int rc = -1;

    snprintf(id, sizeof(id), "bench-%d-exec", (int)getpid());
    cfg.id = id;
    if (sbx_sandbox_create(&cfg, &sb, &err) < 0) {
        fprintf(stderr, "sbx-bench-startup: create `%s`: %s\n", id, err.message);
        return -1;
    }
    for (long i = -o->warmup; i < o->iterations && !interrupted; i++) {
        struct sbx_process p;
        uint64_t start = now_ns();
        int returncode = -1;

        if (sbx_sandbox_exec(sb, &ec, &p, &err) < 0 ||
            sbx_process_wait(&p, -1, &returncode, &err) != 1) {
            fprintf(stderr, "sbx-bench-startup: exec in `%s`: %s\n", id, err.message);
            goto out;
        }
        if (returncode != 0) {
            fprintf(stderr, "sbx-bench-startup: /bin/true exited %d\n", returncode);
            goto out;
        }
        if (i >= 0)
            samples[(*ret_done)++] = now_ns() - start;
    }
    rc = 0;
out:
    if (sbx_sandbox_destroy(sb, &err) < 0) {
        fprintf(stderr, "sbx-bench-startup: destroy `%s`: %s\n", id, err.message);
        rc = -1;
    }
    return rc;
}

static int write_samples(FILE *f, const uint64_t *samples, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%.1f\n", (double)samples[i] / 1e3);
    return fflush(f) != 0 || ferror(f) ? -EIO : 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sbx-bench-startup [options]\n"
            "Times N sandboxes from create to the exit of /bin/true, and their teardown.\n\n"
            "  -n N                    iterations (default 200)\n"
            "  -w, --warmup N          untimed iterations first (default 3)\n"
            "  -i, --image NAME        image (default busybox)\n"
            "      --state-dir DIR     image store and writable layers (default %s)\n"
            "      --run-dir DIR       volatile state (default %s)\n"
            "      --cgroup-parent P   cgroup parent, relative to ours (default %s)\n"
            "      --no-userns         run as real root (no user namespace)\n"
            "      --memory MIB        set a memory limit (shows the cgroup's cost)\n"
            "      --network BR,SUBNET eth0 on bridge BR (made, and removed after) in SUBNET,\n"
            "                          NAT and the firewall, as the daemon's sandboxes\n"
            "      --netpool N         keep N network namespaces made ahead (default 0:\n"
            "                          each sandbox makes its own)\n"
            "      --exec              time N execs of /bin/true into one sandbox instead\n"
            "      --summary           print median/p90/p99/min/max instead of samples\n"
            "      --teardown-out FILE also write the teardown samples (us) to FILE\n"
            "  -h, --help              this help\n",
            DEFAULT_STATE_DIR, DEFAULT_RUN_DIR, DEFAULT_CGROUP_PARENT);
}

static int parse_number(const char *s, const char *what, long min, long max, long *ret)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "sbx-bench-startup: %s must be an integer in %ld..%ld, got `%s`\n", what,
                min, max, s);
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"warmup", required_argument, NULL, 'w'},
        {"image", required_argument, NULL, 'i'},
        {"state-dir", required_argument, NULL, 'S'},
        {"run-dir", required_argument, NULL, 'R'},
        {"cgroup-parent", required_argument, NULL, 'C'},
        {"no-userns", no_argument, NULL, 'U'},
        {"memory", required_argument, NULL, 'm'},
        {"netpool", required_argument, NULL, 'P'},
        {"network", required_argument, NULL, 'N'},
        {"exec", no_argument, NULL, 'E'},
        {"summary", no_argument, NULL, 's'},
        {"teardown-out", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct bench_options o = {
        .iterations = 200,
        .warmup = 3,
        .image = "busybox",
        .state_dir = DEFAULT_STATE_DIR,
        .run_dir = DEFAULT_RUN_DIR,
        .cgroup_parent = DEFAULT_CGROUP_PARENT,
    };
    struct sigaction sa = {.sa_handler = on_interrupt, .sa_flags = SA_RESTART};
    struct sbx_image *img = NULL;
    uint64_t *startup = NULL, *teardown = NULL;
    sbx_error err = {0};
    long done = 0, v;
    int c, rc = 1;

    while ((c = getopt_long(argc, argv, "n:w:i:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (parse_number(optarg, "-n", 1, MAX_ITERATIONS, &o.iterations) < 0)
                return 2;
            break;
        case 'w':
            if (parse_number(optarg, "--warmup", 0, MAX_ITERATIONS, &o.warmup) < 0)
                return 2;
            break;
        case 'i':
            o.image = optarg;
            break;
        case 'S':
            o.state_dir = optarg;
            break;
        case 'R':
            o.run_dir = optarg;
            break;
        case 'C':
            o.cgroup_parent = optarg;
            break;
        case 'U':
            o.no_userns = true;
            break;
        case 'm':
            /* 1 TiB is far beyond any host this runs on, and keeps << 20 exact. */
            if (parse_number(optarg, "--memory", 1, 1L << 20, &v) < 0)
                return 2;
            o.memory_mib = (uint64_t)v;
            break;
        case 'P':
            if (parse_number(optarg, "--netpool", 0, SBX_NETPOOL_MAX, &o.netpool) < 0)
                return 2;
            break;
        case 'N':
            o.network = optarg;
            if (!strchr(optarg, ','))
                return 2;
            break;
        case 'E':
            o.exec = true;
            break;
        case 's':
            o.summary = true;
            break;
        case 'T':
            o.teardown_out = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    if (sbx_image_load(o.state_dir, o.image, &img, &err) < 0) {
        fprintf(stderr, "sbx-bench-startup: %s\n", err.message);
        return 1;
    }
    startup = calloc((size_t)o.iterations, sizeof(*startup));
    teardown = calloc((size_t)o.iterations, sizeof(*teardown));
    if (!startup || !teardown) {
        fprintf(stderr, "sbx-bench-startup: out of memory for %ld samples\n", o.iterations);
        goto out;
    }
    if (o.network) {
        /* BRIDGE,SUBNET; the run dir holds the address leases. */
        static char bridge[32];
        const char *comma = strchr(o.network, ',');
        snprintf(bridge, sizeof(bridge), "%.*s", (int)(comma - o.network), o.network);
        if (sbx_network_parse(comma + 1, &net, &err) < 0) {
            fprintf(stderr, "sbx-bench-startup: --network: %s\n", err.message);
            goto out;
        }
        net.bridge = bridge;
        net.run_dir = o.run_dir;
        if (sbx_network_setup(&net, &err) < 0) {
            fprintf(stderr, "sbx-bench-startup: %s\n", err.message);
            goto out;
        }
        on_network = true;
    }
    if (o.netpool > 0 &&
        sbx_netpool_start((unsigned)o.netpool, on_network ? &net : NULL, &netpool, &err) < 0) {
        fprintf(stderr, "sbx-bench-startup: %s\n", err.message);
        goto out;
    }
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (o.exec) {
        if (run_execs(&o, img, startup, &done) < 0)
            goto out;
        if (interrupted)
            goto out;
        if (o.summary)
            print_summary("exec", startup, (size_t)done);
        else if (write_samples(stdout, startup, (size_t)done) < 0)
            goto out;
        rc = 0;
        goto out;
    }
    /* Warm-up sandboxes are numbered after the timed ones, so ids never repeat. */
    for (long i = 0; i < o.warmup && !interrupted; i++) {
        uint64_t ignored_startup, ignored_teardown;

        if (run_one(&o, img, o.iterations + i, &ignored_startup, &ignored_teardown) < 0)
            goto out;
    }
    for (; done < o.iterations && !interrupted; done++) {
        if (run_one(&o, img, done, &startup[done], &teardown[done]) < 0)
            goto out;
    }
    if (interrupted) {
        fprintf(stderr, "sbx-bench-startup: interrupted after %ld of %ld iterations\n", done,
                o.iterations);
        goto out;
    }

    if (o.teardown_out) {
        FILE *f = fopen(o.teardown_out, "we");

        if (!f) {
            fprintf(stderr, "sbx-bench-startup: open `%s`: %s\n", o.teardown_out, strerror(errno));
            goto out;
        }
        if (write_samples(f, teardown, (size_t)done) < 0) {
            fprintf(stderr, "sbx-bench-startup: write `%s` failed\n", o.teardown_out);
            fclose(f);
            goto out;
        }
        if (fclose(f) != 0) {
            fprintf(stderr, "sbx-bench-startup: close `%s`: %s\n", o.teardown_out, strerror(errno));
            goto out;
        }
    }
    if (o.summary) {
        print_summary("startup", startup, (size_t)done);
        print_summary("teardown", teardown, (size_t)done);
        if (netpool)
            printf("netpool  misses=%ld (sandboxes that made their own namespace)\n",
                   netpool_misses);
        if (fflush(stdout) != 0) {
            fprintf(stderr, "sbx-bench-startup: writing the summary: %s\n", strerror(errno));
            goto out;
        }
    } else if (write_samples(stdout, startup, (size_t)done) < 0) {
        fprintf(stderr, "sbx-bench-startup: writing samples failed\n");
        goto out;
    }
    rc = 0;
out:
    sbx_netpool_stop(netpool);
    if (on_network)
        (void)sbx_network_teardown(&net, NULL);
    /* Its cgroup parent too, once empty, as the daemon does at its stop:
     * run alone (not from bench/startup), it would stay behind. */
    (void)sbx_cgroup_prune(o.cgroup_parent, NULL);
    free(startup);
    free(teardown);
    sbx_image_free(img);
    return rc;
}
