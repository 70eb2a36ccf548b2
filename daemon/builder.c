/* builder.c — sandboxd-build: one step of an image build.
 *
 *   sandboxd-build < STEP.json
 *
 * The daemon (daemon/images.c) runs one of these per step that makes a
 * layer: it creates a sandbox from the layers so far (on the daemon's
 * network, when it has one: steps install packages), runs the step's
 * command with stdout and stderr both on this program's stdout (a pipe the
 * daemon appends to the build's log), and, when the command exits 0, moves
 * the sandbox's writable layer to STEP.layer and makes it an image layer
 * (sbx_layer_commit: owners shifted down, opaque markers, synced).  It is
 * a program of its own because namespaces are never cloned from the
 * daemon (threads), and it needs nothing of a monitor's: a step has no
 * client, no exec, no restart to survive (a build the daemon lost is
 * failed at its next start).
 *
 * STEP.json: {"id": ID, "run_dir", "state_dir", "cgroup_parent",
 *   "layers": [ABS, ..top-most first], "env": ["K=V"], "workdir", "argv": [..],
 *   "network": {"bridge", "subnet"} | null, "resolv_conf": PATH | null,
 *   "mounts": [{"root","path","dst","readonly"}], "timeout_s", "memory_bytes",
 *   "pids_max", "layer": PATH, "uid", "gid" (the image's USER so far; 0)}
 *
 * Exits with the command's returncode (0: the layer is at STEP.layer), 124
 * when it ran past timeout_s, 125 when the step could not be run (a line
 * "sandboxd-build: ..." says why). */
#include "sbx.h"

#include <errno.h>
#include <limits.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_TIMEOUT 124
#define EXIT_SETUP   125

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
    va_list ap;

    fputs("sandboxd-build: ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    return EXIT_SETUP;
}

/* A JSON array of strings as a NULL-terminated vector (pointing into it). */
static const char **strv(json_t *a, bool need_nonempty)
{
    const char **v;
    size_t i;
    json_t *x;

    if (!json_is_array(a) || (need_nonempty && json_array_size(a) == 0))
        return NULL;
    v = calloc(json_array_size(a) + 1, sizeof(*v));
    json_array_foreach(a, i, x)
    {
        if (!v || !(v[i] = json_string_value(x))) {
            free(v);
            return NULL;
        }
    }
    return v;
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void free_strv(const char ***v)
{
    free((void *)*v);
}

static void json_unrefp(json_t **j)
{
    json_decref(*j);
}

int main(void)
{
    json_error_t jerr;
    __attribute__((cleanup(json_unrefp))) json_t *spec =
        json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr);
    json_t *v, *m;
    __attribute__((cleanup(free_strv))) const char **layers = NULL, **env = NULL, **argv = NULL;
    struct sbx_config cfg = {.stdio = {-1, STDOUT_FILENO, STDOUT_FILENO}};
    struct sbx_mount mounts[SBX_MAX_MOUNTS];
    struct sbx_network net = {0};
    struct sbx_netns ns;
    bool have_ns = false;
    const char *layer;
    sbx_sandbox *sb = NULL;
    struct sbx_exit ex;
    sbx_error err = {0};
    uid_t base;
    size_t i;
    int r, timeout_s;

    signal(SIGPIPE, SIG_IGN); /* the daemon gone: the step still ends cleanly */
    if (!json_is_object(spec))
        return fail("step: %s", jerr.text);
    cfg.id = str(spec, "id");
    cfg.run_dir = str(spec, "run_dir");
    cfg.state_dir = str(spec, "state_dir");
    cfg.cgroup_parent = str(spec, "cgroup_parent");
    cfg.layers = layers = strv(json_object_get(spec, "layers"), true);
    cfg.env = env = strv(json_object_get(spec, "env"), false);
    cfg.argv = argv = strv(json_object_get(spec, "argv"), true);
    cfg.workdir = str(spec, "workdir");
    cfg.resolv_conf = str(spec, "resolv_conf");
    cfg.limits.memory_bytes = (uint64_t)json_integer_value(json_object_get(spec, "memory_bytes"));
    cfg.limits.pids_max = json_integer_value(json_object_get(spec, "pids_max"));
    timeout_s = (int)json_integer_value(json_object_get(spec, "timeout_s"));
    cfg.uid = (uid_t)json_integer_value(json_object_get(spec, "uid"));
    cfg.gid = (gid_t)json_integer_value(json_object_get(spec, "gid"));
    layer = str(spec, "layer");
    if (!cfg.id || !cfg.run_dir || !cfg.state_dir || !cfg.layers || !cfg.env || !cfg.argv ||
        !layer || layer[0] != '/' || timeout_s <= 0)
        return fail("step: id, run_dir, state_dir, layers, env, argv, timeout_s and layer "
                    "are required");
    json_array_foreach(json_object_get(spec, "mounts"), i, m)
    {
        if (i >= SBX_MAX_MOUNTS)
            return fail("step: more than %d mounts", SBX_MAX_MOUNTS);
        mounts[i] = (struct sbx_mount){.root = str(m, "root"),
                                       .path = str(m, "path"),
                                       .dst = str(m, "dst"),
                                       .readonly = json_is_true(json_object_get(m, "readonly"))};
        cfg.n_mounts = i + 1;
    }
    cfg.mounts = mounts;
    if ((v = json_object_get(spec, "network")) && json_is_object(v)) {
        net.bridge = str(v, "bridge");
        net.run_dir = cfg.run_dir;
        if (!net.bridge || sbx_network_parse(str(v, "subnet"), &net, &err) < 0)
            return fail("step: network: %s", err.message[0] ? err.message : "bridge missing");
        if (sbx_netns_make(&net, &ns, &err) < 0)
            return fail("network: %s", err.message);
        cfg.netns = &ns;
        have_ns = true;
    }
    fflush(stdout);
    r = sbx_sandbox_create(&cfg, &sb, &err);
    if (have_ns)
        sbx_netns_close(&ns);
    if (r < 0)
        return fail("%s", err.message);
    r = sbx_sandbox_wait(sb, timeout_s * 1000, &ex, &err);
    if (r == 0) {
        (void)sbx_sandbox_destroy(sb, NULL);
        printf("sandboxd-build: the step ran past its %d s\n", timeout_s);
        return EXIT_TIMEOUT;
    }
    if (r < 0) {
        (void)sbx_sandbox_destroy(sb, NULL);
        return fail("%s", err.message);
    }
    if (ex.returncode != 0 || ex.reason != SBX_FINISH_EXITED) {
        (void)sbx_sandbox_destroy(sb, NULL);
        if (ex.reason == SBX_FINISH_OOM)
            printf("sandboxd-build: the step ran out of memory\n");
        return ex.returncode > 0 && ex.returncode < 256 ? ex.returncode : 1;
    }
    r = sbx_sandbox_save_upper(sb, layer, &base, &err);
    (void)sbx_sandbox_destroy(sb, NULL);
    if (r < 0)
        return fail("%s", err.message);
    {
        /* The mount point made for the DNS servers' file, empty, is no
         * part of what the step wrote. */
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof(path), "%s/etc/resolv.conf", layer);
        if (cfg.resolv_conf && lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) {
            unlink(path);
            snprintf(path, sizeof(path), "%s/etc", layer);
            (void)rmdir(path);
        }
    }
    if (sbx_layer_commit(layer, base, &err) < 0) {
        (void)sbx_rm_rf(layer, NULL);
        return fail("%s", err.message);
    }
    return 0;
}
