/* oci.c — OCI images in and out, with skopeo and umoci (both Debian
 * packages, well kept, and what the OCI tooling world reads and writes).
 *
 * In: `skopeo copy SOURCE oci:WORK/oci:latest` fetches a registry's image
 * (docker://HOST[:PORT]/NAME[:TAG]) or reads an OCI archive
 * (oci-archive:FILE) into an OCI image layout, then `umoci raw unpack`
 * applies its layers into one tree (as root: owners as the image has
 * them, which is how this daemon's layers are kept).  The image's config
 * (Env, WorkingDir, Entrypoint and Cmd, User) comes from the layout.
 *
 * Out: the image's layers flattened into one tree (sbx_layers_flatten),
 * made the single layer of a new layout (`umoci init`, `new`, `unpack`,
 * `repack`, `config`), and that layout tarred: an OCI image layout tar,
 * which is what skopeo calls an oci-archive and what umoci reads once
 * untarred.
 *
 * Everything here blocks (the tools run to their end): the thread pool's
 * work.  The tools' output goes to log_fd. */
#include "sandboxd.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int run_tool(char *const argv[], int log_fd, char *why, size_t why_len)
{
    char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "HOME=/root", NULL};
    posix_spawn_file_actions_t fa;
    int status, r;
    pid_t pid;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (log_fd >= 0) {
        posix_spawn_file_actions_adddup2(&fa, log_fd, 1);
        posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
    }
    r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0) {
        snprintf(why, why_len, "cannot run %s: %s (apt-get install %s)", argv[0], strerror(r),
                 argv[0]);
        return -r;
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(why, why_len, "%s %s failed (exit %d)", argv[0], argv[1],
                 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        return -EIO;
    }
    return 0;
}

/* A blob of the layout by its digest "sha256:HEX", parsed. */
static json_t *blob(const char *layout, const char *digest)
{
    char path[PATH_MAX];

    if (!digest || strncmp(digest, "sha256:", 7) || strchr(digest + 7, '/'))
        return NULL;
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", layout, digest + 7);
    return sbxd_read_json(path);
}

/* The image config of the layout's first manifest, as this daemon keeps
 * one: {"env", "workdir", "entrypoint", "user"}. */
static json_t *layout_config(const char *layout)
{
    char path[PATH_MAX];
    json_t *index, *manifest = NULL, *config = NULL, *c, *ep, *out;

    snprintf(path, sizeof(path), "%s/index.json", layout);
    index = sbxd_read_json(path);
    manifest = blob(layout, json_string_value(json_object_get(
                                json_array_get(json_object_get(index, "manifests"), 0), "digest")));
    config = blob(
        layout, json_string_value(json_object_get(json_object_get(manifest, "config"), "digest")));
    json_decref(index);
    json_decref(manifest);
    if (!json_is_object(config)) {
        json_decref(config);
        return NULL;
    }
    c = json_object_get(config, "config");
    ep = json_array();
    if (json_is_array(json_object_get(c, "Entrypoint")))
        json_array_extend(ep, json_object_get(c, "Entrypoint"));
    if (json_is_array(json_object_get(c, "Cmd")))
        json_array_extend(ep, json_object_get(c, "Cmd"));
    out =
        json_pack("{s:o,s:s,s:o,s:s?}", "env",
                  json_is_array(json_object_get(c, "Env")) ? json_incref(json_object_get(c, "Env"))
                                                           : json_array(),
                  "workdir",
                  json_string_length(json_object_get(c, "WorkingDir"))
                      ? json_string_value(json_object_get(c, "WorkingDir"))
                      : "/",
                  "entrypoint", json_array_size(ep) ? ep : (json_decref(ep), json_null()), "user",
                  json_string_length(json_object_get(c, "User"))
                      ? json_string_value(json_object_get(c, "User"))
                      : NULL);
    json_decref(config);
    return out;
}

int sbxd_oci_unpack(const char *source, bool insecure, const char *work, const char *rootfs,
                    json_t **ret_config, int log_fd, char *why, size_t why_len)
{
    char layout[PATH_MAX], ref[PATH_MAX + 16];
    int r;

    snprintf(layout, sizeof(layout), "%s/oci", work);
    snprintf(ref, sizeof(ref), "oci:%s:latest", layout);
    {
        /* (signatures are not checked: there is no policy to check them
         * against; TLS is, but for loopback registries) */
        char *argv[] = {
            "skopeo", "copy", "--insecure-policy", "--src-tls-verify=false", (char *)source,
            ref,      NULL};
        if (!insecure)
            memmove(&argv[3], &argv[4], 3 * sizeof(char *));
        if ((r = run_tool(argv, log_fd, why, why_len)) < 0)
            return r;
    }
    snprintf(ref, sizeof(ref), "%s:latest", layout);
    {
        char *argv[] = {"umoci", "raw", "unpack", "--image", ref, (char *)rootfs, NULL};
        if ((r = run_tool(argv, log_fd, why, why_len)) < 0)
            return r;
    }
    if (!(*ret_config = layout_config(layout))) {
        snprintf(why, why_len, "the image's config cannot be read from its layout");
        return -EINVAL;
    }
    return 0;
}

int sbxd_oci_export(const char *const *layers, json_t *config, const char *work,
                    const char *tar_out, int log_fd, char *why, size_t why_len)
{
    char layout[PATH_MAX], bundle[PATH_MAX], rootfs[PATH_MAX], image[PATH_MAX + 16];
    sbx_error err = {0};
    json_t *x;
    size_t i;
    int r;

    snprintf(layout, sizeof(layout), "%s/oci", work);
    snprintf(bundle, sizeof(bundle), "%s/bundle", work);
    snprintf(rootfs, sizeof(rootfs), "%s/bundle/rootfs", work);
    snprintf(image, sizeof(image), "%s:latest", layout);
    {
        char *init[] = {"umoci", "init", "--layout", layout, NULL};
        char *new[] = {"umoci", "new", "--image", image, NULL};
        char *unpack[] = {"umoci", "unpack", "--image", image, bundle, NULL};
        if ((r = run_tool(init, log_fd, why, why_len)) < 0 ||
            (r = run_tool(new, log_fd, why, why_len)) < 0 ||
            (r = run_tool(unpack, log_fd, why, why_len)) < 0)
            return r;
    }
    /* The empty rootfs umoci made, replaced by the image's files. */
    if (rmdir(rootfs) < 0 || sbx_layers_flatten(layers, rootfs, &err) < 0) {
        snprintf(why, why_len, "flatten the layers: %s",
                 err.message[0] ? err.message : strerror(errno));
        return -EIO;
    }
    {
        char *repack[] = {"umoci", "repack", "--image", image, bundle, NULL};
        if ((r = run_tool(repack, log_fd, why, why_len)) < 0)
            return r;
    }
    {
        /* The config: umoci config --config.env K=V ... */
        char *argv[512];
        size_t n = 0;
        argv[n++] = "umoci";
        argv[n++] = "config";
        argv[n++] = "--image";
        argv[n++] = image;
        json_array_foreach(json_object_get(config, "env"), i, x)
        {
            if (n + 4 >= sizeof(argv) / sizeof(argv[0]))
                break;
            argv[n++] = "--config.env";
            argv[n++] = (char *)json_string_value(x);
        }
        if (json_string_value(json_object_get(config, "workdir"))) {
            argv[n++] = "--config.workingdir";
            argv[n++] = (char *)json_string_value(json_object_get(config, "workdir"));
        }
        if (json_string_value(json_object_get(config, "user"))) {
            argv[n++] = "--config.user";
            argv[n++] = (char *)json_string_value(json_object_get(config, "user"));
        }
        json_array_foreach(json_object_get(config, "entrypoint"), i, x)
        {
            if (n + 4 >= sizeof(argv) / sizeof(argv[0]))
                break;
            argv[n++] = "--config.entrypoint";
            argv[n++] = (char *)json_string_value(x);
        }
        argv[n] = NULL;
        if ((r = run_tool(argv, log_fd, why, why_len)) < 0)
            return r;
    }
    {
        char *tar[] = {"tar", "--numeric-owner", "-C", layout, "-cf", (char *)tar_out, ".", NULL};
        if ((r = run_tool(tar, log_fd, why, why_len)) < 0)
            return r;
    }
    return 0;
}
