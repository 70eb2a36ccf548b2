/* sbx-run — run one command in a fresh sandbox with the runtime library, no
 * daemon involved.  Used by the README's quick start, by hand when debugging
 * the runtime, and as a peer in bench/.
 *
 *   sbx-run [options] [--] CMD [ARG...]
 *
 * Exits with the command's returncode (128+N for a signal, 137 on OOM). */
#include "image.h"
#include "sbx.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* A whole non-negative number, or a clear error: "64k" or "-1" is not a
 * limit anyone meant. */
static bool parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *ret)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max) {
        fprintf(stderr, "sbx-run: %s wants a whole number up to %llu, got `%s`\n", opt,
                (unsigned long long)max, s);
        return false;
    }
    *ret = v;
    return true;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sbx-run [options] [--] CMD [ARG...]\n"
            "Runs CMD in a new sandbox and exits with its returncode.\n\n"
            "  -i, --image NAME       image (default debian-slim)\n"
            "  -e, --env K=V          add to the environment (repeatable)\n"
            "  -w, --workdir DIR      working directory (default: the image's)\n"
            "  -H, --hostname NAME    hostname (default: the sandbox id)\n"
            "  -m, --memory MIB       hard memory limit\n"
            "  -p, --pids N           max tasks\n"
            "  -c, --cpu CORES        hard cpu cap (e.g. 0.5)\n"
            "  -u, --user UID[:GID]   user inside the sandbox (default 0)\n"
            "      --exec             start the sandbox idle, then exec CMD into it\n"
            "      --no-userns        run as real root (no user namespace)\n"
            "      --state-dir DIR    image store and writable layers (default /var/lib/sandboxd)\n"
            "      --run-dir DIR      volatile state (default /run/sandboxd)\n"
            "  -h, --help             this help\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"image", required_argument, NULL, 'i'},
        {"env", required_argument, NULL, 'e'},
        {"workdir", required_argument, NULL, 'w'},
        {"hostname", required_argument, NULL, 'H'},
        {"memory", required_argument, NULL, 'm'},
        {"pids", required_argument, NULL, 'p'},
        {"cpu", required_argument, NULL, 'c'},
        {"user", required_argument, NULL, 'u'},
        {"exec", no_argument, NULL, 'X'},
        {"no-userns", no_argument, NULL, 'U'},
        {"state-dir", required_argument, NULL, 'S'},
        {"run-dir", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *image_name = "debian-slim";
    const char *state_dir = getenv("SBX_STATE_DIR") ? getenv("SBX_STATE_DIR") : "/var/lib/sandboxd";
    struct sbx_config cfg = {
        .stdio = {0, 1, 2}, .run_dir = "/run/sandboxd", .cgroup_parent = "sbx-run"};
    struct sbx_image *img = NULL;
    const char **env = NULL;
    size_t n_env = 0, n_extra = 0;
    char **extra = calloc((size_t)argc + 1, sizeof(char *));
    bool exec_mode = false;
    struct sbx_exit ex;
    sbx_sandbox *sb = NULL;
    sbx_error err = {0};
    char id[64];
    uint64_t num;
    bool sb_created = false;
    int c, rc = 125;

    if (!extra)
        return 125;
    while ((c = getopt_long(argc, argv, "+i:e:w:H:m:p:c:u:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            image_name = optarg;
            break;
        case 'e':
            if (!strchr(optarg, '=')) {
                fprintf(stderr, "sbx-run: --env wants K=V, got `%s`\n", optarg);
                goto out;
            }
            extra[n_extra++] = optarg;
            break;
        case 'w':
            cfg.workdir = optarg;
            break;
        case 'H':
            cfg.hostname = optarg;
            break;
        case 'm':
            if (!parse_u64("--memory", optarg, UINT64_MAX >> 20, &num))
                goto out;
            cfg.limits.memory_bytes = num << 20;
            break;
        case 'p':
            if (!parse_u64("--pids", optarg, INT64_MAX, &num))
                goto out;
            cfg.limits.pids_max = (int64_t)num;
            break;
        case 'c': {
            char *end;
            double cores = strtod(optarg, &end);

            if (end == optarg || *end || !(cores > 0 && cores <= 1024)) {
                fprintf(stderr, "sbx-run: --cpu wants cores, e.g. 0.5, got `%s`\n", optarg);
                goto out;
            }
            cfg.limits.cpu_period_us = 100000;
            cfg.limits.cpu_quota_us = (uint64_t)(cores * 100000);
            break;
        }
        case 'u': {
            char *colon = strchr(optarg, ':');
            uint64_t gid;

            if (colon)
                *colon = '\0';
            if (!parse_u64("--user", optarg, UINT32_MAX - 1, &num) ||
                (colon && !parse_u64("--user", colon + 1, UINT32_MAX - 1, &gid)))
                goto out;
            cfg.uid = (uid_t)num;
            cfg.gid = colon ? (gid_t)gid : cfg.uid;
            break;
        }
        case 'X':
            exec_mode = true;
            break;
        case 'U':
            cfg.no_userns = true;
            break;
        case 'S':
            state_dir = optarg;
            break;
        case 'R':
            cfg.run_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            rc = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        goto out;
    }
    if (sbx_image_load(state_dir, image_name, &img, &err) < 0) {
        fprintf(stderr, "sbx-run: %s\n", err.message);
        goto out;
    }
    /* The image's environment, then --env (later entries win in getenv). */
    for (char **e = img->env; *e; e++)
        n_env++;
    env = calloc(n_env + n_extra + 1, sizeof(char *));
    if (!env)
        goto out;
    memcpy(env, img->env, n_env * sizeof(char *));
    memcpy(env + n_env, extra, n_extra * sizeof(char *));

    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(id, sizeof(id), "sbx-run-%d-%ld", (int)getpid(), (long)(ts.tv_nsec % 100000));
    }
    cfg.id = id;
    cfg.state_dir = state_dir;
    cfg.layers = (const char *const *)img->layers;
    cfg.env = env;
    if (!cfg.workdir)
        cfg.workdir = img->workdir;
    cfg.argv = exec_mode ? NULL : (const char *const *)argv + optind;

    sb_created = true; /* from here on, even a failed create may leave the parent */
    /* A terminal's Ctrl-C reaches us, not the sandbox: end it cleanly. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    if (sbx_sandbox_create(&cfg, &sb, &err) < 0) {
        fprintf(stderr, "sbx-run: %s\n", err.message);
        goto out;
    }
    if (exec_mode) {
        struct sbx_exec_config ec = {.argv = (const char *const *)argv + optind,
                                     .env = env,
                                     .workdir = cfg.workdir,
                                     .uid = cfg.uid,
                                     .gid = cfg.gid,
                                     .stdio = {0, 1, 2}};
        struct sbx_process p;

        if (sbx_sandbox_exec(sb, &ec, &p, &err) < 0 || sbx_process_wait(&p, -1, &rc, &err) < 0) {
            fprintf(stderr, "sbx-run: %s\n", err.message);
            rc = 125;
        }
    } else if (sbx_sandbox_wait(sb, -1, &ex, &err) < 0) {
        fprintf(stderr, "sbx-run: %s\n", err.message);
    } else {
        rc = ex.returncode;
        if (ex.reason == SBX_FINISH_OOM)
            fprintf(stderr, "sbx-run: sandbox %s: out of memory\n", id);
    }
    if (sbx_sandbox_destroy(sb, &err) < 0)
        fprintf(stderr, "sbx-run: destroy: %s\n", err.message);
out:
    /* A one-shot tool leaves no cgroup behind; others' sandboxes keep theirs. */
    if (sb_created)
        (void)sbx_cgroup_prune(cfg.cgroup_parent, NULL);
    free(env);
    free(extra);
    sbx_image_free(img);
    return rc;
}
