/* layer.c — a sandbox's writable layer made into an image layer.
 *
 * An overlay upper dir written inside a user namespace holds files owned by
 * the sandbox's host uid range, whiteouts (0:0 character devices) and opaque
 * directories marked with user.overlay.opaque (userxattr mounts).  An image
 * layer is owned as the image's root would own it were it host root (it is
 * idmapped into each sandbox that uses it), and is read by overlays with
 * userxattr (user namespaces) and without (--no-userns: trusted.*).  So:
 * owners shifted down by the range's base (anything outside the range
 * becomes 65534, "nobody"), and both opaque markers set.  File
 * capabilities (security.capability) are dropped: those written in a user
 * namespace name its root and mean nothing elsewhere.
 *
 * The walk opens every entry beneath its parent with O_NOFOLLOW (a
 * snapshot reads the upper dir of a sandbox that runs on and may swap a
 * directory for a symlink meanwhile), never enters a mount point, holds one
 * fd per level and refuses trees deeper than LAYER_MAX_DEPTH. */
#include "internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#define LAYER_MAX_DEPTH 512
#define NOBODY          65534

static uid_t shift(uid_t id, uid_t base)
{
    if (base == 0)
        return id;
    return id >= base && id - base < SBX_UID_RANGE ? id - base : NOBODY;
}

/* Whether the directory open at fd is opaque (either marker). */
static bool is_opaque(int fd)
{
    char v[4];

    return fgetxattr(fd, "user.overlay.opaque", v, sizeof(v)) == 1 ||
           fgetxattr(fd, "trusted.overlay.opaque", v, sizeof(v)) == 1;
}

static int mark_opaque(int fd, const char *what, sbx_error *err)
{
    if (fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0) < 0 ||
        fsetxattr(fd, "user.overlay.opaque", "y", 1, 0) < 0)
        return sbx__error(err, errno, "mark `%s` opaque", what);
    return 0;
}

/* Files with more than one link, copied once: the rest are links to the
 * copy (busybox's hundreds of applets are one file). */
struct link {
    dev_t dev;
    ino_t ino;
    char *path; /* the copy's, absolute */
};

struct walk {
    uid_t base;
    dev_t dev;
    bool copy;  /* copy into dst (else fix src in place) */
    bool apply; /* copy over what dst has: whiteouts remove, opaque dirs replace */
    const char *src_top, *dst_top; /* (copy: a path's place in dst) */
    struct link *links;            /* an open-addressing table by inode */
    size_t n_links, cap_links;
    sbx_error *err;
};

static size_t link_slot(const struct walk *w, dev_t dev, ino_t ino)
{
    size_t i = (size_t)(ino * 0x9E3779B97F4A7C15ULL ^ dev) & (w->cap_links - 1);

    while (w->links[i].path && !(w->links[i].dev == dev && w->links[i].ino == ino))
        i = (i + 1) & (w->cap_links - 1);
    return i;
}

/* The copy of (dev, ino) made earlier, or NULL. */
static const char *link_find(const struct walk *w, dev_t dev, ino_t ino)
{
    return w->cap_links ? w->links[link_slot(w, dev, ino)].path : NULL;
}

static void link_add(struct walk *w, dev_t dev, ino_t ino, const char *path)
{
    if (2 * (w->n_links + 1) > w->cap_links) {
        struct walk grown = *w;
        grown.cap_links = w->cap_links ? 2 * w->cap_links : 64;
        grown.links = calloc(grown.cap_links, sizeof(*grown.links));
        if (!grown.links)
            return; /* (copied again instead) */
        for (size_t i = 0; i < w->cap_links; i++)
            if (w->links[i].path)
                grown.links[link_slot(&grown, w->links[i].dev, w->links[i].ino)] = w->links[i];
        free(w->links);
        w->links = grown.links;
        w->cap_links = grown.cap_links;
    }
    {
        size_t i = link_slot(w, dev, ino);
        if (!w->links[i].path && (w->links[i].path = strdup(path))) {
            w->links[i].dev = dev;
            w->links[i].ino = ino;
            w->n_links++;
        }
    }
}

static void links_free(struct walk *w)
{
    for (size_t i = 0; i < w->cap_links; i++)
        free(w->links[i].path);
    free(w->links);
    w->links = NULL;
    w->n_links = w->cap_links = 0;
}

static int walk_dir(struct walk *w, int src, int dst, const char *where, int depth);

/* Copies one entry of src (a directory fd) into dst, or fixes it in place. */
static int walk_entry(struct walk *w, int src, int dst, const char *name, const char *where,
                      int depth)
{
    uid_t uid, gid;
    struct stat st;
    int r = 0;

    if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : sbx__error(w->err, errno, "stat `%s/%s`", where, name);
    uid = shift(st.st_uid, w->base);
    gid = shift(st.st_gid, w->base);
    if (w->apply) {
        /* Flattening: an upper entry replaces the lower one (a directory
         * over a directory merges, unless opaque); a whiteout only
         * removes. */
        struct stat dst_st;
        bool whiteout = S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
        if (fstatat(dst, name, &dst_st, AT_SYMLINK_NOFOLLOW) == 0) {
            bool merge = S_ISDIR(st.st_mode) && S_ISDIR(dst_st.st_mode);
            if (merge && !whiteout) {
                _cleanup_close_ int s =
                    openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (s >= 0 && is_opaque(s) && (r = sbx__rm_rf_at(dst, name, w->err)) < 0)
                    return r;
            } else if ((r = sbx__rm_rf_at(dst, name, w->err)) < 0) {
                return r;
            }
        }
        if (whiteout)
            return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        _cleanup_close_ int s = -1, d = -1;
        char sub[PATH_MAX];

        if (st.st_dev != w->dev)
            return sbx__error(w->err, EXDEV, "`%s/%s` is a mount point", where, name);
        s = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (s < 0)
            return sbx__error(w->err, errno, "open `%s/%s`", where, name);
        if (w->copy) {
            if (mkdirat(dst, name, 0700) < 0 && !(w->apply && errno == EEXIST))
                return sbx__error(w->err, errno, "mkdir `%s`", name);
            d = openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (d < 0)
                return sbx__error(w->err, errno, "open new `%s`", name);
        }
        snprintf(sub, sizeof(sub), "%s/%s", where, name);
        if ((r = walk_dir(w, s, w->copy ? d : -1, sub, depth + 1)) < 0)
            return r;
        if (!w->apply && is_opaque(s) && (r = mark_opaque(w->copy ? d : s, sub, w->err)) < 0)
            return r;
        {
            int t = w->copy ? d : s;
            struct timespec times[2] = {st.st_atim, st.st_mtim};
            if (fchown(t, uid, gid) < 0 || fchmod(t, st.st_mode & 07777) < 0)
                return sbx__error(w->err, errno, "set the owner of `%s`", sub);
            if (w->copy)
                (void)futimens(t, times);
        }
        return 0;
    }
    if (!w->copy) {
        /* In place: the owner, then the mode back (a chown clears set-id
         * bits), and no file capability. */
        if (fchownat(src, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
            return sbx__error(w->err, errno, "set the owner of `%s/%s`", where, name);
        if (S_ISREG(st.st_mode)) {
            _cleanup_close_ int f = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (f >= 0) {
                (void)fremovexattr(f, "security.capability");
                if (st.st_mode & (S_ISUID | S_ISGID))
                    (void)fchmod(f, st.st_mode & 07777);
            }
        }
        return 0;
    }
    if (S_ISREG(st.st_mode)) {
        _cleanup_close_ int s = -1, d = -1;
        struct timespec times[2] = {st.st_atim, st.st_mtim};
        off_t left = st.st_size;
        char dst_path[PATH_MAX * 2];

        snprintf(dst_path, sizeof(dst_path), "%s%s/%s", w->dst_top, where + strlen(w->src_top),
                 name);
        if (st.st_nlink > 1) {
            const char *first = link_find(w, st.st_dev, st.st_ino);
            if (first && linkat(AT_FDCWD, first, dst, name, 0) == 0)
                return 0;
            link_add(w, st.st_dev, st.st_ino, dst_path);
        }
        s = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

        if (s < 0)
            return errno == ENOENT ? 0 : sbx__error(w->err, errno, "open `%s/%s`", where, name);
        d = openat(dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (d < 0)
            return sbx__error(w->err, errno, "create `%s`", name);
        while (left > 0) {
            ssize_t n = copy_file_range(s, NULL, d, NULL, (size_t)left, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS)) {
                char buf[65536];
                n = read(s, buf, sizeof(buf));
                if (n > 0 && write(d, buf, (size_t)n) != n)
                    n = -1;
            }
            if (n < 0)
                return sbx__error(w->err, errno, "copy `%s/%s`", where, name);
            if (n == 0)
                break; /* it shrank meanwhile */
            left -= n;
        }
        if (fchown(d, uid, gid) < 0 || fchmod(d, st.st_mode & 07777) < 0)
            return sbx__error(w->err, errno, "set the owner of `%s`", name);
        (void)futimens(d, times);
        return 0;
    }
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(src, name, target, sizeof(target) - 1);
        if (n < 0)
            return errno == ENOENT ? 0 : sbx__error(w->err, errno, "readlink `%s`", name);
        target[n] = '\0';
        if (symlinkat(target, dst, name) < 0 ||
            fchownat(dst, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
            return sbx__error(w->err, errno, "symlink `%s`", name);
        return 0;
    }
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
        /* A whiteout. */
        if (mknodat(dst, name, S_IFCHR | (st.st_mode & 0777), makedev(0, 0)) < 0 ||
            fchownat(dst, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
            return sbx__error(w->err, errno, "whiteout `%s`", name);
        return 0;
    }
    if (S_ISFIFO(st.st_mode)) {
        if (mkfifoat(dst, name, st.st_mode & 07777) < 0 ||
            fchownat(dst, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
            return sbx__error(w->err, errno, "fifo `%s`", name);
        return 0;
    }
    /* Sockets and devices (a sandbox can make neither that means anything
     * elsewhere) are left out. */
    return 0;
}

static int walk_dir(struct walk *w, int src, int dst, const char *where, int depth)
{
    _cleanup_closedir_ DIR *d = NULL;
    struct dirent *de;
    int fd, r;

    if (depth > LAYER_MAX_DEPTH)
        return sbx__error(w->err, ELOOP, "`%s`: deeper than %d directories", where,
                          LAYER_MAX_DEPTH);
    fd = fcntl(src, F_DUPFD_CLOEXEC, 3);
    if (fd < 0 || !(d = fdopendir(fd))) {
        if (fd >= 0)
            close(fd);
        return sbx__error(w->err, errno, "read `%s`", where);
    }
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            (r = walk_entry(w, src, dst, de->d_name, where, depth)) < 0)
            return r;
    return 0;
}

/* The top directory (src, which it closes; or src_path): its contents,
 * then its own owner and markers. */
static int walk_top(int src, const char *src_path, const char *dst_path, uid_t uid_base, bool copy,
                    sbx_error *err)
{
    _cleanup_close_ int dst = -1;
    struct walk w = {
        .base = uid_base, .copy = copy, .src_top = src_path, .dst_top = dst_path, .err = err};
    struct stat st;
    int r;

    if (src < 0)
        src = open(src_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (src < 0 || fstat(src, &st) < 0) {
        r = sbx__error(err, errno, "open `%s`", src_path);
        goto out;
    }
    w.dev = st.st_dev;
    if (copy) {
        if (mkdir(dst_path, 0700) < 0) {
            r = sbx__error(err, errno, "mkdir `%s`", dst_path);
            goto out;
        }
        dst = open(dst_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dst < 0) {
            r = sbx__error(err, errno, "open `%s`", dst_path);
            goto out;
        }
    }
    r = walk_dir(&w, src, dst, src_path, 0);
    links_free(&w);
    if (r < 0)
        goto out;
    {
        int t = copy ? dst : src;
        if (fchown(t, shift(st.st_uid, uid_base), shift(st.st_gid, uid_base)) < 0 ||
            fchmod(t, st.st_mode & 07777) < 0) {
            r = sbx__error(err, errno, "set the owner of `%s`", copy ? dst_path : src_path);
            goto out;
        }
        /* The layer must survive a host crash once it is an image's. */
        if (syncfs(t) < 0)
            r = sbx__error(err, errno, "sync `%s`", copy ? dst_path : src_path);
    }
out:
    if (src >= 0)
        close(src);
    return r;
}

int sbx_layers_flatten(const char *const *layers, const char *dst, sbx_error *err)
{
    _cleanup_close_ int d = -1;
    size_t n = 0;
    int r;

    while (layers[n])
        n++;
    if (mkdir(dst, 0755) < 0)
        return sbx__error(err, errno, "mkdir `%s`", dst);
    d = open(dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d < 0)
        return sbx__error(err, errno, "open `%s`", dst);
    /* The lowest first; each one above over it. */
    while (n-- > 0) {
        _cleanup_close_ int s = open(layers[n], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct walk w = {
            .copy = true, .apply = true, .src_top = layers[n], .dst_top = dst, .err = err};
        struct stat st;

        if (s < 0 || fstat(s, &st) < 0) {
            r = sbx__error(err, errno, "open `%s`", layers[n]);
            goto fail;
        }
        w.dev = st.st_dev;
        r = walk_dir(&w, s, d, layers[n], 0);
        links_free(&w);
        if (r < 0)
            goto fail;
        if (fchown(d, st.st_uid, st.st_gid) < 0 || fchmod(d, st.st_mode & 07777) < 0) {
            r = sbx__error(err, errno, "set the owner of `%s`", dst);
            goto fail;
        }
    }
    return 0;
fail:
    (void)sbx__rm_rf(dst, NULL);
    return r;
}

int sbx_layer_commit(const char *dir, uid_t uid_base, sbx_error *err)
{
    return walk_top(-1, dir, NULL, uid_base, false, err);
}

int sbx_layer_copy(const char *src, const char *dst, uid_t uid_base, sbx_error *err)
{
    int r = walk_top(-1, src, dst, uid_base, true, err);

    if (r < 0 && r != -EEXIST)
        (void)sbx__rm_rf(dst, NULL);
    return r;
}

int sbx_layer_copy_at(int src_fd, const char *what, const char *dst, uid_t uid_base, sbx_error *err)
{
    int r = walk_top(src_fd, what, dst, uid_base, true, err);

    if (r < 0)
        (void)sbx__rm_rf(dst, NULL);
    return r;
}
