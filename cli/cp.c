/* cp.c — sbx cp: files and directories between the host and a running
 * sandbox, through the files API (GET/PUT/POST files, ls, mkdir); the same
 * copies serve `sbx volume put/get` on a volume's files API.
 *
 * Like cp -r and docker cp: copying onto an existing directory puts the
 * source inside it; otherwise the destination becomes the copy.  File modes
 * come along (set-uid/gid bits are dropped on the host side: files from a
 * sandbox are not trusted).  The API has neither readlink nor symlink, so a
 * symlink is copied as the file it points to, and one to a directory (or to
 * nothing) is skipped with a warning; so are devices, fifos and sockets.
 * Large files go up in pieces (PUT, then POST append=1), each under the
 * daemon's body limit; a file comes down in one GET (the daemon serves files
 * up to 64 MiB). */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define UPLOAD_CHUNK_MAX (4u << 20)
#define MAX_DEPTH        256

struct cp {
    struct cli_client *c;
    const char *base;  /* "/v1/sandboxes/ID" or "/v1/volumes/NAME" */
    const char *label; /* the other side, in messages: LABEL:PATH */
    size_t chunk;      /* bytes per upload request */
    char *buf;
    unsigned long files, skipped;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sbx cp [OPTIONS] SRC DST\n"
            "Copies a file or a directory (recursively) between the host and a running\n"
            "sandbox; one of SRC and DST is SANDBOX:PATH (SANDBOX as everywhere: an id, a\n"
            "prefix, APP/NAME), the other a local path (one with a ':' must start with ./ or /).\n"
            "Onto an existing directory the source is copied inside it; otherwise DST\n"
            "becomes the copy.  A local `-` is stdin or stdout (a single file).\n\n"
            "Modes come along (no set-uid/gid bits on the host); the API has no symlinks, so\n"
            "a symlink is copied as the file it points to, and other kinds are skipped.\n\n"
            "      --host HOST    the daemon (see sbx --help)\n"
            "  -h, --help         this help\n");
}

/* "SANDBOX:PATH" → true with its parts; anything else is a local path. */
static bool split_remote(const char *arg, char **ret_sandbox, char **ret_path)
{
    const char *colon = strchr(arg, ':');
    size_t n = colon ? (size_t)(colon - arg) : 0, slashes = 0;

    if (!colon || n == 0 || arg[0] == '.' || arg[0] == '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (arg[i] == '/')
            slashes++;
        else if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
                         arg[i]))
            return false;
    }
    if (slashes > 1)
        return false;
    *ret_sandbox = strndup(arg, n);
    *ret_path = colon[1] == '/' ? strdup(colon + 1) : cli_strdupf("/%s", colon + 1);
    return *ret_sandbox && *ret_path;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir);

    return cli_strdupf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

/* The last component of p, without trailing slashes ("" for "/"). */
static char *base_name(const char *p)
{
    _cleanup_free_ char *copy = strdup(p);
    size_t n = copy ? strlen(copy) : 0;

    if (!copy)
        return NULL;
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    if (!strcmp(copy, "/"))
        return strdup("");
    return strdup(basename(copy));
}

static bool ends_with_slash(const char *p)
{
    size_t n = strlen(p);

    return n > 0 && p[n - 1] == '/';
}

/* ---- the sandbox's side ---- */

static char *files_path(struct cp *cp, const char *what, const char *rpath, const char *extra)
{
    _cleanup_free_ char *e = cli_escape(rpath);

    return cli_strdupf("%s/%s?path=%s%s", cp->base, what, e ? e : "", extra);
}

static int remote_ls(struct cp *cp, const char *rpath, json_t **ret, struct cli_error *err)
{
    _cleanup_free_ char *path = files_path(cp, "ls", rpath, "");

    return cli_call(cp->c, "GET", path, NULL, ret, err);
}

struct remote_stat {
    char type[16]; /* directory, file, symlink, other */
    unsigned mode;
    double mtime;
};

/* What rpath is, from its parent's listing (the API has no stat).
 * -ENOENT (err untouched) when it is not there. */
static int remote_stat(struct cp *cp, const char *rpath, struct remote_stat *st,
                       struct cli_error *err)
{
    _cleanup_free_ char *name = base_name(rpath), *copy = strdup(rpath);
    _cleanup_json_ json_t *list = NULL;
    struct cli_error e = {0};
    const char *parent;
    size_t i;
    json_t *ent;

    if (!name || !copy)
        return cli_error_errno(err, ENOMEM, "cp");
    if (!*name) {
        *st = (struct remote_stat){.type = "directory", .mode = 0755};
        return 0;
    }
    parent = dirname(copy);
    if (remote_ls(cp, parent, &list, &e) < 0) {
        if (e.status == 404) {
            cli_error_free(&e);
            return -ENOENT;
        }
        *err = e;
        return -EIO;
    }
    json_array_foreach(list, i, ent)
    {
        if (strcmp(cli_str(ent, "name") ?: "", name))
            continue;
        snprintf(st->type, sizeof(st->type), "%s", cli_str(ent, "type") ?: "other");
        st->mode = (unsigned)json_integer_value(json_object_get(ent, "mode"));
        st->mtime = json_number_value(json_object_get(ent, "mtime"));
        return 0;
    }
    return -ENOENT;
}

static int remote_mkdir(struct cp *cp, const char *rpath, struct cli_error *err)
{
    _cleanup_free_ char *path = files_path(cp, "mkdir", rpath, "");

    return cli_call(cp->c, "POST", path, NULL, NULL, err);
}

/* Reads up to len bytes (fewer only at EOF). */
static ssize_t read_full(int fd, char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* fd's contents to rpath: a PUT (creating it with mode), then appends. */
static int put_file(struct cp *cp, int fd, const char *what, const char *rpath, unsigned mode,
                    struct cli_error *err)
{
    _cleanup_free_ char *mode_arg = cli_strdupf("&mode=%04o", mode & 07777);
    _cleanup_free_ char *put = files_path(cp, "files", rpath, mode_arg);
    _cleanup_free_ char *append = files_path(cp, "files", rpath, "&append=1");
    bool first = true;

    for (;;) {
        ssize_t n = read_full(fd, cp->buf, cp->chunk);
        int r;
        if (n < 0)
            return cli_error_errno(err, (int)-n, "read %s", what);
        if (n == 0 && !first)
            break;
        r = cli_call_raw(cp->c, first ? "PUT" : "POST", first ? put : append, cp->buf, (size_t)n,
                         NULL, err);
        if (r < 0)
            return r;
        first = false;
        if ((size_t)n < cp->chunk)
            break;
    }
    cp->files++;
    return 0;
}

/* ---- up: host to sandbox ---- */

static int up_tree(struct cp *cp, const char *lpath, const char *rpath, int depth,
                   struct cli_error *err);

static int up_entry(struct cp *cp, const char *lpath, const char *rpath, int depth,
                    struct cli_error *err)
{
    struct stat st;
    _cleanup_close_ int fd = -1;

    if (lstat(lpath, &st) < 0)
        return cli_error_errno(err, errno, "%s", lpath);
    if (S_ISDIR(st.st_mode))
        return up_tree(cp, lpath, rpath, depth + 1, err);
    if (S_ISLNK(st.st_mode) && (stat(lpath, &st) < 0 || !S_ISREG(st.st_mode))) {
        cli_warn("skipped %s: a symlink to %s", lpath,
                 errno == ENOENT ? "nothing" : "something other than a file");
        cp->skipped++;
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        cli_warn("skipped %s: not a file or a directory", lpath);
        cp->skipped++;
        return 0;
    }
    fd = open(lpath, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_error_errno(err, errno, "%s", lpath);
    return put_file(cp, fd, lpath, rpath, st.st_mode, err);
}

static int up_tree(struct cp *cp, const char *lpath, const char *rpath, int depth,
                   struct cli_error *err)
{
    DIR *d;
    struct dirent *de;
    int r;

    if (depth > MAX_DEPTH)
        return cli_error_set(err, 0, "%s: more than %d directories deep", lpath, MAX_DEPTH);
    r = remote_mkdir(cp, rpath, err);
    if (r < 0)
        return r;
    d = opendir(lpath);
    if (!d)
        return cli_error_errno(err, errno, "%s", lpath);
    while ((errno = 0, de = readdir(d))) {
        _cleanup_free_ char *l = NULL, *rp = NULL;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        l = join(lpath, de->d_name);
        rp = join(rpath, de->d_name);
        r = up_entry(cp, l, rp, depth, err);
        if (r < 0) {
            closedir(d);
            return r;
        }
    }
    r = errno ? cli_error_errno(err, errno, "%s", lpath) : 0;
    closedir(d);
    return r;
}

static int copy_up(struct cp *cp, const char *src, const char *rdst, struct cli_error *err)
{
    struct remote_stat rst;
    _cleanup_free_ char *target = NULL, *name = NULL;
    struct stat st;
    int r;

    if (!strcmp(src, "-")) {
        r = remote_stat(cp, rdst, &rst, err);
        if (r == -EIO)
            return r;
        if (r == 0 && !strcmp(rst.type, "directory"))
            return cli_error_set(err, 0, "%s:%s is a directory: name a file to copy stdin to",
                                 cp->label, rdst);
        return put_file(cp, STDIN_FILENO, "stdin", rdst, 0644, err);
    }
    if (stat(src, &st) < 0)
        return cli_error_errno(err, errno, "%s", src);
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        return cli_error_set(err, 0, "%s: not a file or a directory", src);
    r = remote_stat(cp, rdst, &rst, err);
    if (r == -EIO)
        return r;
    name = base_name(src);
    if (!name)
        return cli_error_errno(err, ENOMEM, "cp");
    if (r == 0 && !strcmp(rst.type, "directory"))
        target = *name ? join(rdst, name) : strdup(rdst);
    else if (r == 0 && S_ISDIR(st.st_mode))
        return cli_error_set(err, 0, "cannot copy directory %s onto %s:%s, which is not one", src,
                             cp->label, rdst);
    else if (r < 0 && ends_with_slash(rdst))
        return cli_error_set(err, 404, "%s:%s: no such directory", cp->label, rdst);
    else
        target = strdup(rdst);
    if (!target)
        return cli_error_errno(err, ENOMEM, "cp");
    if (S_ISDIR(st.st_mode))
        return up_tree(cp, src, target, 0, err);
    return up_entry(cp, src, target, 0, err);
}

/* ---- down: sandbox to host ---- */

struct sink {
    int fd;
};

static int write_chunk(const char *data, size_t len, void *userdata)
{
    struct sink *s = userdata;

    return cli_write_all(s->fd, data, len);
}

/* rpath into a new file beside lpath, renamed over it once complete.
 * 404 and 400 (a directory behind a symlink) come back as -ENOENT and
 * -EISDIR with err filled. */
static int down_file(struct cp *cp, const char *rpath, const char *lpath, unsigned mode,
                     double mtime, struct cli_error *err)
{
    _cleanup_free_ char *path = files_path(cp, "files", rpath, "");
    _cleanup_free_ char *tmp = cli_strdupf("%s.sbx-XXXXXX", lpath);
    struct sink s;
    int r;

    if (!strcmp(lpath, "-")) {
        s.fd = STDOUT_FILENO;
        r = cli_call_stream(cp->c, path, write_chunk, &s, err);
        if (r < 0 && !err->message)
            cli_error_errno(err, -r, "write stdout");
        if (r >= 0)
            cp->files++;
        return r;
    }
    s.fd = mkostemp(tmp, O_CLOEXEC);
    if (s.fd < 0)
        return cli_error_errno(err, errno, "create %s", tmp);
    r = cli_call_stream(cp->c, path, write_chunk, &s, err);
    if (r < 0 && !err->message)
        cli_error_errno(err, -r, "write %s", lpath);
    if (r >= 0 && fchmod(s.fd, mode & 0777) < 0)
        r = cli_error_errno(err, errno, "chmod %s", lpath);
    if (r >= 0 && mtime > 0) {
        struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = (time_t)mtime}};
        (void)futimens(s.fd, ts);
    }
    if (close(s.fd) < 0 && r >= 0)
        r = cli_error_errno(err, errno, "write %s", lpath);
    if (r >= 0 && rename(tmp, lpath) < 0)
        r = cli_error_errno(err, errno, "rename %s to %s", tmp, lpath);
    if (r < 0) {
        unlink(tmp);
        if (err->status == 404)
            return -ENOENT;
        if (err->status == 400 && err->message && strstr(err->message, "Is a directory"))
            return -EISDIR;
        return r;
    }
    cp->files++;
    return 0;
}

static int down_tree(struct cp *cp, const char *rpath, const char *lpath, unsigned mode, int depth,
                     struct cli_error *err)
{
    _cleanup_json_ json_t *list = NULL;
    size_t i;
    json_t *ent;
    int r;

    if (depth > MAX_DEPTH)
        return cli_error_set(err, 0, "%s: more than %d directories deep", rpath, MAX_DEPTH);
    if (mkdir(lpath, 0700) < 0 && errno != EEXIST)
        return cli_error_errno(err, errno, "mkdir %s", lpath);
    r = remote_ls(cp, rpath, &list, err);
    if (r < 0)
        return r;
    json_array_foreach(list, i, ent)
    {
        const char *name = cli_str(ent, "name"), *type = cli_str(ent, "type") ?: "other";
        unsigned m = (unsigned)json_integer_value(json_object_get(ent, "mode"));
        double mtime = json_number_value(json_object_get(ent, "mtime"));
        _cleanup_free_ char *rp = NULL, *lp = NULL;

        if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
            continue; /* not a name a directory entry can have */
        rp = join(rpath, name);
        lp = join(lpath, name);
        if (!strcmp(type, "directory")) {
            r = down_tree(cp, rp, lp, m, depth + 1, err);
        } else if (!strcmp(type, "file")) {
            r = down_file(cp, rp, lp, m, mtime, err);
        } else if (!strcmp(type, "symlink")) {
            /* Followed inside the sandbox's root by the daemon. */
            r = down_file(cp, rp, lp, 0644, 0, err);
            if (r == -ENOENT || r == -EISDIR) {
                cli_warn("skipped %s:%s: a symlink to %s", cp->label, rp,
                         r == -ENOENT ? "nothing" : "a directory");
                cli_error_free(err);
                cp->skipped++;
                r = 0;
            }
        } else {
            cli_warn("skipped %s:%s: not a file or a directory", cp->label, rp);
            cp->skipped++;
            r = 0;
        }
        if (r < 0)
            return r;
    }
    if (chmod(lpath, mode & 01777) < 0)
        return cli_error_errno(err, errno, "chmod %s", lpath);
    return 0;
}

static int copy_down(struct cp *cp, const char *rsrc, const char *dst, struct cli_error *err)
{
    struct remote_stat rst;
    _cleanup_free_ char *target = NULL, *name = base_name(rsrc);
    struct stat st;
    bool dst_is_dir, dst_exists;
    int r = remote_stat(cp, rsrc, &rst, err);

    if (r == -ENOENT)
        return cli_error_set(err, 404, "%s:%s: no such file or directory", cp->label, rsrc);
    if (r < 0)
        return r;
    if (!name)
        return cli_error_errno(err, ENOMEM, "cp");
    if (!strcmp(rst.type, "symlink")) {
        /* A symlink named on the command line: what it points to. */
        _cleanup_json_ json_t *list = NULL;
        struct cli_error e = {0};
        if (remote_ls(cp, rsrc, &list, &e) == 0)
            snprintf(rst.type, sizeof(rst.type), "directory");
        else
            snprintf(rst.type, sizeof(rst.type), "file");
        rst.mode = !strcmp(rst.type, "directory") ? 0755 : 0644;
        cli_error_free(&e);
    }
    if (strcmp(rst.type, "directory") && strcmp(rst.type, "file"))
        return cli_error_set(err, 0, "%s:%s: not a file or a directory", cp->label, rsrc);
    if (!strcmp(dst, "-")) {
        if (!strcmp(rst.type, "directory"))
            return cli_error_set(err, 0, "%s:%s is a directory: it cannot go to stdout", cp->label,
                                 rsrc);
        return down_file(cp, rsrc, "-", rst.mode, rst.mtime, err);
    }
    dst_exists = stat(dst, &st) == 0;
    dst_is_dir = dst_exists && S_ISDIR(st.st_mode);
    if (dst_is_dir)
        target = *name ? join(dst, name) : strdup(dst);
    else if (dst_exists && !strcmp(rst.type, "directory"))
        return cli_error_set(err, 0, "cannot copy directory %s:%s onto %s, which is not one",
                             cp->label, rsrc, dst);
    else if (!dst_exists && ends_with_slash(dst))
        return cli_error_set(err, 0, "%s: no such directory", dst);
    else
        target = strdup(dst);
    if (!target)
        return cli_error_errno(err, ENOMEM, "cp");
    if (!strcmp(rst.type, "directory"))
        return down_tree(cp, rsrc, target, rst.mode, 0, err);
    r = down_file(cp, rsrc, target, rst.mode, rst.mtime, err);
    if (r == -EISDIR || r == -ENOENT)
        r = -EIO;
    return r;
}

/* Bytes per upload request: what the daemon takes, at most 4 MiB. */
static size_t upload_chunk(struct cli_client *c)
{
    _cleanup_json_ json_t *info = NULL;
    struct cli_error err = {0};
    json_int_t max_body = 0;

    if (cli_call(c, "GET", "/v1/info", NULL, &info, &err) == 0)
        max_body = json_integer_value(json_object_get(json_object_get(info, "limits"), "max_body"));
    cli_error_free(&err);
    if (max_body > 4096 && (uint64_t)max_body < UPLOAD_CHUNK_MAX)
        return (size_t)max_body;
    return UPLOAD_CHUNK_MAX;
}

int cli_copy_up(struct cli_client *c, const char *base, const char *label, const char *src,
                const char *rdst, struct cli_error *err)
{
    struct cp cp = {.c = c, .base = base, .label = label};
    int r;

    cp.chunk = upload_chunk(c);
    cp.buf = malloc(cp.chunk);
    r = cp.buf ? copy_up(&cp, src, rdst, err) : cli_error_errno(err, ENOMEM, "copy");
    free(cp.buf);
    if (r < 0 && !err->message)
        cli_error_errno(err, -r, "copy");
    return r;
}

int cli_copy_down(struct cli_client *c, const char *base, const char *label, const char *rsrc,
                  const char *dst, struct cli_error *err)
{
    struct cp cp = {.c = c, .base = base, .label = label};
    int r = copy_down(&cp, rsrc, dst, err);

    if (r < 0 && !err->message)
        cli_error_errno(err, -r, "copy");
    return r;
}

int cmd_cp(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    _cleanup_free_ char *src_sb = NULL, *src_path = NULL, *dst_sb = NULL, *dst_path = NULL;
    _cleanup_free_ char *id = NULL, *base = NULL;
    struct cli_error err = {0};
    struct cli_client *c;
    bool up;
    int ch, r;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        default:
            return cli_bad_option("cp", argv, CLI_EXIT_USAGE);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("cp", CLI_EXIT_USAGE, "give SRC and DST");
    {
        bool src_remote = split_remote(argv[optind], &src_sb, &src_path);
        bool dst_remote = split_remote(argv[optind + 1], &dst_sb, &dst_path);
        if (src_remote == dst_remote)
            return cli_usage_error("cp", CLI_EXIT_USAGE,
                                   "exactly one of SRC and DST must be SANDBOX:PATH");
        up = dst_remote;
    }
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    r = cli_resolve_sandbox(c, up ? dst_sb : src_sb, &id, &err);
    if (r >= 0) {
        base = cli_strdupf("/v1/sandboxes/%s", id);
        r = up ? cli_copy_up(c, base, id, argv[optind], dst_path, &err)
               : cli_copy_down(c, base, id, src_path, argv[optind + 1], &err);
    }
    if (r < 0) {
        cli_error_print(&err);
        cli_error_free(&err);
        return CLI_EXIT_FAILURE;
    }
    return 0;
}
