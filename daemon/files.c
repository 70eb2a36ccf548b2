/* files.c — the "Files inside a sandbox" endpoints of API.md, and the same
 * operations on a volume's files (volumes.c).
 *
 * The sandbox's root is reached through /proc/INIT/root (its mount namespace
 * is not the host's), and every path is resolved beneath it with openat2's
 * RESOLVE_IN_ROOT: `..` stops at the sandbox's root and absolute symlinks
 * are taken relative to it, so no path a client or the sandbox's own files
 * spell can reach the host.  Magic links (/proc/self/root inside) are
 * refused.  The work is blocking filesystem I/O, so it runs on libuv's
 * thread pool and the reply is made back on the loop. */
#include "sandboxd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FILES_MAX_READ (64u << 20)

enum file_op { OP_READ, OP_WRITE, OP_APPEND, OP_LS, OP_MKDIR, OP_DELETE };

struct file_job {
    uv_work_t work;
    sbxd_req *req;
    bool aborted;
    enum file_op op;
    char sandbox_id[32];
    int init_pid;
    char *root_path; /* a volume's directory (instead of a sandbox's root) */
    char *path;      /* relative to the sandbox's root, no leading '/' */
    mode_t mode;
    bool recursive;
    void *in; /* a copy of the request body: the request may go before the work ends */
    size_t in_len;
    /* results */
    int err;
    char what[256];
    char *out;
    size_t out_len;
    json_t *json;
};

static int resolve(int rootfd, const char *path, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = (flags & O_CREAT) ? mode : 0,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof(how));

    return fd < 0 ? -errno : (int)fd;
}

/* The root of a sandbox that is still the one we mean: the pid must still
 * be in the sandbox's cgroup (a recycled pid would be elsewhere). */
int sbxd_sandbox_root_open(const char *sandbox_id, int init_pid, uid_t *ret_uid)
{
    char path[64], buf[4096];
    int fd, cg, n;
    unsigned long inside, outside;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/root", init_pid);
    fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -ESRCH;
    snprintf(path, sizeof(path), "/proc/%d/cgroup", init_pid);
    cg = open(path, O_RDONLY | O_CLOEXEC);
    n = cg >= 0 ? (int)read(cg, buf, sizeof(buf) - 1) : -1;
    if (cg >= 0)
        close(cg);
    if (n <= 0 || (buf[n] = '\0', !strstr(buf, sandbox_id))) {
        close(fd);
        return -ESRCH;
    }
    /* Files we create belong to the sandbox's root, not to host root. */
    *ret_uid = 0;
    snprintf(path, sizeof(path), "/proc/%d/uid_map", init_pid);
    f = fopen(path, "re");
    if (f && fscanf(f, "%lu %lu", &inside, &outside) == 2 && inside == 0)
        *ret_uid = (uid_t)outside;
    if (f)
        fclose(f);
    return fd;
}

static int open_root(const struct file_job *j, uid_t *ret_uid)
{
    int fd;

    /* A volume: its files are host root's (idmapped into each sandbox). */
    if (j->root_path) {
        *ret_uid = 0;
        fd = open(j->root_path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -ENOENT : fd;
    }
    return sbxd_sandbox_root_open(j->sandbox_id, j->init_pid, ret_uid);
}

static int mkdirs(int rootfd, const char *path, bool include_last)
{
    char buf[4096];
    size_t len = strlen(path);

    if (len >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    for (char *p = buf;; p++) {
        bool last = *p == '\0';
        if (*p != '/' && !last)
            continue;
        if (last && !include_last)
            break;
        *p = '\0';
        if (*buf) {
            char *slash = strrchr(buf, '/');
            const char *name = slash ? slash + 1 : buf;
            int dfd;
            if (slash)
                *slash = '\0';
            dfd = resolve(rootfd, slash ? buf : "", O_PATH | O_DIRECTORY, 0);
            if (slash)
                *slash = '/';
            if (dfd < 0)
                return dfd;
            if (mkdirat(dfd, name, 0755) < 0) {
                int e = -errno;
                if (e != -EEXIST) {
                    close(dfd);
                    return e;
                }
            } else {
                /* 0755 whatever the daemon's umask (077); through an fd,
                 * never a path a sandbox could have swapped meanwhile. */
                int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd >= 0) {
                    (void)fchmod(fd, 0755);
                    close(fd);
                }
            }
            close(dfd);
        }
        if (last)
            break;
        *p = '/';
    }
    return 0;
}

static int rm_tree(int dfd, const char *name, int depth)
{
    struct stat st;
    int fd, r = 0;
    DIR *d;
    struct dirent *de;

    if (depth > 256)
        return -ELOOP;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dfd, name, 0) < 0 ? -errno : 0;
    fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (!(d = fdopendir(fd))) {
        close(fd);
        return -errno;
    }
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && r == 0)
            r = rm_tree(dirfd(d), de->d_name, depth + 1);
    closedir(d);
    if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
        r = -errno;
    return r;
}

static const char *type_name(mode_t m)
{
    return S_ISDIR(m) ? "directory" : S_ISREG(m) ? "file" : S_ISLNK(m) ? "symlink" : "other";
}

/* Acts, on this thread only, as the sandbox's root: a filesystem mounted in
 * the sandbox's user namespace refuses to create files for a host uid it
 * cannot map (EOVERFLOW), and what we create must belong to the sandbox.
 * setfsuid drops the filesystem capabilities from the effective set; take
 * back the ones a root inside has (still in our permitted set). */
static void become_sandbox_root(uid_t uid)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];

    syscall(SYS_setfsgid, uid);
    syscall(SYS_setfsuid, uid);
    if (syscall(SYS_capget, &hdr, data) == 0) {
        data[0].effective |= (1u << CAP_CHOWN) | (1u << CAP_DAC_OVERRIDE) |
                             (1u << CAP_DAC_READ_SEARCH) | (1u << CAP_FOWNER) | (1u << CAP_FSETID);
        data[0].effective &= data[0].permitted;
        syscall(SYS_capset, &hdr, data);
    }
}

static void become_host_root(void)
{
    /* Back to fsuid 0: the kernel restores the filesystem capabilities. */
    syscall(SYS_setfsuid, 0);
    syscall(SYS_setfsgid, 0);
}

static void do_op(struct file_job *j, int rootfd);

static void do_work(uv_work_t *w)
{
    struct file_job *j = w->data;
    uid_t owner = 0;
    int rootfd = open_root(j, &owner);

    if (rootfd < 0) {
        j->err = -rootfd;
        snprintf(j->what, sizeof(j->what), "%s",
                 j->root_path ? "the volume is gone" : "the sandbox is not running");
        return;
    }
    if (owner)
        become_sandbox_root(owner);
    do_op(j, rootfd);
    if (owner)
        become_host_root();
    close(rootfd);
}

static void do_op(struct file_job *j, int rootfd)
{
    int fd = -1;
    struct stat st;

    switch (j->op) {
    case OP_READ:
        fd = resolve(rootfd, j->path, O_RDONLY | O_NOFOLLOW, 0);
        if (fd < 0 && fd == -ELOOP)
            fd = resolve(rootfd, j->path, O_RDONLY, 0); /* a symlink, resolved in the root */
        if (fd < 0 || fstat(fd, &st) < 0) {
            j->err = fd < 0 ? -fd : errno;
            break;
        }
        if (!S_ISREG(st.st_mode)) {
            j->err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
            break;
        }
        if ((uint64_t)st.st_size > FILES_MAX_READ) {
            j->err = EFBIG;
            break;
        }
        j->out = malloc((size_t)st.st_size + 1);
        while (j->out && j->out_len < (size_t)st.st_size) {
            ssize_t n = read(fd, j->out + j->out_len, (size_t)st.st_size - j->out_len);
            if (n <= 0)
                break;
            j->out_len += (size_t)n;
        }
        if (!j->out)
            j->err = ENOMEM;
        break;
    case OP_WRITE:
    case OP_APPEND:
        if ((j->err = -mkdirs(rootfd, j->path, false)) != 0)
            break;
        fd = resolve(rootfd, j->path,
                     O_WRONLY | O_CREAT | O_NOFOLLOW | (j->op == OP_APPEND ? O_APPEND : O_TRUNC),
                     j->mode);
        if (fd < 0) {
            j->err = -fd;
            break;
        }
        if (j->op == OP_WRITE)
            (void)fchmod(fd, j->mode);
        for (size_t off = 0; off < j->in_len;) {
            ssize_t n = write(fd, (const char *)j->in + off, j->in_len - off);
            if (n <= 0) {
                j->err = n < 0 ? errno : EIO;
                break;
            }
            off += (size_t)n;
        }
        break;
    case OP_MKDIR:
        j->err = -mkdirs(rootfd, j->path, true);
        break;
    case OP_LS: {
        DIR *d;
        struct dirent *de;
        fd = resolve(rootfd, j->path, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0 || !(d = fdopendir(fd))) {
            j->err = fd < 0 ? -fd : errno;
            break;
        }
        fd = -1; /* owned by d */
        j->json = json_array();
        while ((de = readdir(d)) && json_array_size(j->json) < 100000) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                continue;
            json_array_append_new(
                j->json, json_pack("{s:s,s:s,s:I,s:i,s:I}", "name", de->d_name, "type",
                                   type_name(st.st_mode), "size", (json_int_t)st.st_size, "mode",
                                   (int)(st.st_mode & 07777), "mtime", (json_int_t)st.st_mtime));
        }
        closedir(d);
        break;
    }
    case OP_DELETE: {
        char *slash = strrchr(j->path, '/');
        const char *name = slash ? slash + 1 : j->path;
        int dfd;
        if (!*j->path) {
            j->err = EPERM;
            snprintf(j->what, sizeof(j->what), "the root cannot be deleted");
            break;
        }
        if (slash)
            *slash = '\0';
        dfd = resolve(rootfd, slash ? j->path : "", O_PATH | O_DIRECTORY, 0);
        if (slash)
            *slash = '/';
        if (dfd < 0) {
            j->err = -dfd;
            break;
        }
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            j->err = errno;
        else if (S_ISDIR(st.st_mode) && j->recursive)
            j->err = -rm_tree(dfd, name, 0);
        else if (unlinkat(dfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0)
            j->err = errno;
        close(dfd);
        break;
    }
    }
    if (fd >= 0)
        close(fd);
}

static void on_abort(sbxd_req *req, void *data)
{
    struct file_job *j = data;

    (void)req;
    j->aborted = true;
}

static void after_work(uv_work_t *w, int status)
{
    struct file_job *j = w->data;

    if (!j->aborted) {
        sbxd_req_on_abort(j->req, NULL, NULL);
        if (status < 0)
            sbxd_reply_error(j->req, 500, "internal", "file operation cancelled");
        else if (j->err) {
            int e = j->err;
            /* (no space: the volume's or the writable layer's cap, or
             * the host's disk; too large for where it goes) */
            int code = e == ENOENT || e == ENOTDIR                ? 404
                       : e == EFBIG || e == ENOSPC || e == EDQUOT ? 413
                       : e == ESRCH                               ? 409
                                                                  : 400;
            sbxd_reply_error(j->req, code,
                             code == 404   ? "not_found"
                             : code == 413 ? "too_large"
                             : code == 409 ? "failed_precondition"
                                           : "invalid_argument",
                             "%s: %s", j->what, strerror(e));
        } else if (j->op == OP_READ)
            sbxd_reply_bytes(j->req, 200, "application/octet-stream", j->out, j->out_len);
        else if (j->op == OP_LS)
            sbxd_reply_json(j->req, 200, json_incref(j->json));
        else
            sbxd_reply_empty(j->req, 204);
    }
    free(j->out);
    free(j->in);
    json_decref(j->json);
    free(j->path);
    free(j->root_path);
    free(j);
}

/* Validates ?path=: absolute, no NUL, sane length.  Returns it without the
 * leading '/' (so that it resolves beneath the root fd), or NULL after
 * replying 400. */
static char *take_path(sbxd_req *req)
{
    const char *p = sbxd_req_query(req, "path");
    size_t n;
    char *s;

    if (!p || p[0] != '/' || (n = strlen(p)) > 4095) {
        sbxd_reply_error(req, 400, "invalid_argument", "path must be an absolute path");
        return NULL;
    }
    while (*p == '/')
        p++;
    s = strdup(p);
    if (s) {
        /* "a/b/" and "a//b" mean "a/b". */
        char *w = s;
        for (const char *r = s; *r; r++)
            if (!(*r == '/' && (r[1] == '/' || r[1] == '\0')))
                *w++ = *r;
        *w = '\0';
    }
    return s;
}

struct retry {
    sbxd_req *req;
    char what[8];
};

static void retry_after_status(struct sbxd *d, struct sbxd_sandbox *sb, json_t *reply, void *data)
{
    struct retry *rt = data;
    json_t *pid = json_object_get(reply, "init_pid");

    if (json_is_integer(pid) && json_integer_value(pid) > 0) {
        sb->init_pid = (int)json_integer_value(pid);
        sbxd_files_handle(d, rt->req, sb, rt->what);
    } else {
        sbxd_reply_error(rt->req, 409, "failed_precondition", "sandbox `%s` is not running",
                         sb->id);
    }
    free(rt);
}

static int op_of(const char *method, const char *what)
{
    if (!strcmp(what, "files") && !strcmp(method, "GET"))
        return OP_READ;
    if (!strcmp(what, "files") && !strcmp(method, "PUT"))
        return OP_WRITE;
    if (!strcmp(what, "files") && !strcmp(method, "POST"))
        return OP_APPEND;
    if (!strcmp(what, "files") && !strcmp(method, "DELETE"))
        return OP_DELETE;
    if (!strcmp(what, "ls") && !strcmp(method, "GET"))
        return OP_LS;
    if (!strcmp(what, "mkdir") && !strcmp(method, "POST"))
        return OP_MKDIR;
    return -1;
}

/* Parses the request's query and body into a job on the thread pool:
 * in the sandbox whose init is init_pid, or in the directory root_path. */
static void queue_job(struct sbxd *d, sbxd_req *req, enum file_op op, struct sbxd_sandbox *sb,
                      const char *root_path)
{
    struct file_job *j = calloc(1, sizeof(*j));

    if (!j) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    j->path = take_path(req);
    if (!j->path) {
        free(j);
        return;
    }
    j->req = req;
    j->op = op;
    if (sb) {
        j->init_pid = sb->init_pid;
        snprintf(j->sandbox_id, sizeof(j->sandbox_id), "%s", sb->id);
    } else if (!(j->root_path = strdup(root_path))) {
        sbxd_reply_error(req, 500, "internal", "out of memory");
        goto fail;
    }
    snprintf(j->what, sizeof(j->what), "%s", sbxd_req_query(req, "path"));
    j->recursive =
        sbxd_req_query(req, "recursive") && !strcmp(sbxd_req_query(req, "recursive"), "1");
    j->mode = 0644;
    if (sbxd_req_query(req, "mode")) {
        char *end;
        unsigned long m = strtoul(sbxd_req_query(req, "mode"), &end, 8);
        if (*end || m > 07777) {
            sbxd_reply_error(req, 400, "invalid_argument", "mode must be octal, e.g. 0644");
            goto fail;
        }
        j->mode = (mode_t)m;
    }
    if (op == OP_APPEND &&
        !(sbxd_req_query(req, "append") && !strcmp(sbxd_req_query(req, "append"), "1"))) {
        sbxd_reply_error(req, 400, "invalid_argument", "POST files needs append=1 (PUT replaces)");
        goto fail;
    }
    if (op == OP_WRITE || op == OP_APPEND) {
        const void *body = sbxd_req_body(req, &j->in_len);
        j->in = malloc(j->in_len + 1);
        if (!j->in) {
            sbxd_reply_error(req, 500, "internal", "out of memory");
            goto fail;
        }
        memcpy(j->in, body, j->in_len);
    }
    j->work.data = j;
    sbxd_req_on_abort(req, on_abort, j);
    if (uv_queue_work(d->loop, &j->work, do_work, after_work) < 0) {
        sbxd_req_on_abort(req, NULL, NULL);
        sbxd_reply_error(req, 500, "internal", "cannot queue the file operation");
        goto fail;
    }
    return;
fail:
    free(j->in);
    free(j->path);
    free(j->root_path);
    free(j);
}

void sbxd_files_handle(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb, const char *what)
{
    const char *method = sbxd_req_method(req);
    int op = op_of(method, what);

    if (op < 0) {
        sbxd_reply_error(req, 405, "invalid_argument", "method %s not allowed here", method);
        return;
    }
    if (strcmp(sb->state, "finished") == 0) {
        sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` is not running", sb->id);
        return;
    }
    if (sb->init_pid <= 0) {
        /* Just created: ask the monitor for its init first, then go on. */
        struct retry *rt = malloc(sizeof(*rt));
        if (!rt) {
            sbxd_reply_error(req, 500, "internal", "out of memory");
            return;
        }
        rt->req = req;
        snprintf(rt->what, sizeof(rt->what), "%s", what);
        if (sbxd_monitor_request(d, sb, json_pack("{s:s}", "op", "status"), retry_after_status,
                                 rt) < 0) {
            free(rt);
            sbxd_reply_error(req, 409, "failed_precondition", "sandbox `%s` is not running",
                             sb->id);
        }
        return;
    }
    queue_job(d, req, (enum file_op)op, sb, NULL);
}

void sbxd_files_handle_dir(struct sbxd *d, sbxd_req *req, const char *root, const char *what)
{
    const char *method = sbxd_req_method(req);
    int op = op_of(method, what);

    if (op < 0) {
        sbxd_reply_error(req, 405, "invalid_argument", "method %s not allowed here", method);
        return;
    }
    queue_job(d, req, (enum file_op)op, NULL, root);
}
