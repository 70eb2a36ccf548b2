/* util.c — small file helpers shared by the runtime's modules. */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int sbx__write_file_at(int dirfd, const char *name, const char *data, sbx_error *err)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    size_t len = strlen(data);

    if (fd < 0)
        return sbx__error(err, errno, "open `%s`", name);
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return sbx__error(err, errno, "write `%s` to `%s`", data, name);
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int sbx__write_file(const char *path, const char *data, sbx_error *err)
{
    return sbx__write_file_at(AT_FDCWD, path, data, err);
}

int sbx__read_file_at(int dirfd, const char *name, char *buf, size_t size, sbx_error *err)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    size_t off = 0;

    if (fd < 0)
        return sbx__error(err, errno, "open `%s`", name);
    if (size == 0)
        return sbx__error(err, EINVAL, "read `%s` into an empty buffer", name);
    while (off < size - 1) {
        ssize_t n = read(fd, buf + off, size - 1 - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return sbx__error(err, errno, "read `%s`", name);
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    buf[off] = '\0';
    return (int)off;
}

int sbx__mkdir_p(const char *path, mode_t mode, sbx_error *err)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf))
        return sbx__error(err, ENAMETOOLONG, "mkdir `%s`", path);
    /* Usually only the last component is missing.  Directories made here
     * get exactly `mode`, whatever the caller's umask. */
    if (mkdir(path, mode) == 0)
        return chmod(path, mode) < 0 ? sbx__error(err, errno, "chmod `%s`", path) : 0;
    if (errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return sbx__error(err, errno, "mkdir `%s`", path);
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) == 0)
            (void)chmod(buf, mode);
        else if (errno != EEXIST)
            return sbx__error(err, errno, "mkdir `%s`", buf);
        *p = '/';
    }
    if (mkdir(buf, mode) == 0)
        (void)chmod(buf, mode);
    else if (errno != EEXIST)
        return sbx__error(err, errno, "mkdir `%s`", buf);
    return 0;
}

/* Opens the directory `name` in dfd for removing what is in it: never
 * through a symlink, with search permission taken when it has none. */
static int open_for_removal(int dfd, const char *name, const struct stat *st)
{
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);

    if (fd < 0 && errno == EPERM)
        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && (st->st_mode & 0700) != 0700)
        (void)fchmod(fd, st->st_mode | 0700);
    return fd;
}

/* Removes everything in the directory open at top (which it closes).
 * Every entry is opened with O_NOFOLLOW relative to its parent, and a
 * directory on another device (a mount point) is never descended into, so
 * a symlink or a mount planted by a sandbox cannot redirect the removal
 * onto the host.  One directory fd is open whatever the depth (a sandbox
 * makes its trees as deep as it likes): the walk goes down by name and
 * back up by "..", keeping only the names on its way. */
static int rm_contents(int top, dev_t dev, sbx_error *err)
{
    _cleanup_free_ char **names = NULL;
    size_t depth = 0, cap = 0;
    int cur = top, r = 0;

    for (;;) {
        int next, dfd = fcntl(cur, F_DUPFD_CLOEXEC, 3);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
        struct dirent *de;
        char *child = NULL;
        struct stat st;

        if (!d) {
            r = sbx__error(err, errno, "fdopendir");
            if (dfd >= 0)
                close(dfd);
            break;
        }
        while (r == 0 && (de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            if (fstatat(cur, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT)
                    r = sbx__error(err, errno, "stat `%s`", de->d_name);
            } else if (S_ISDIR(st.st_mode)) {
                if (st.st_dev != dev)
                    r = sbx__error(err, EBUSY, "remove `%s`: a mount point", de->d_name);
                else if (!(child = strdup(de->d_name)))
                    r = sbx__error(err, ENOMEM, "remove");
                break;
            } else if (unlinkat(cur, de->d_name, 0) < 0 && errno != ENOENT) {
                r = sbx__error(err, errno, "unlink `%s`", de->d_name);
            }
        }
        closedir(d);
        if (r < 0)
            break;
        if (child) {
            if (depth == cap) {
                char **n = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof(*names));
                if (!n) {
                    free(child);
                    r = sbx__error(err, ENOMEM, "remove");
                    break;
                }
                names = n;
            }
            if (fstatat(cur, child, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                (next = open_for_removal(cur, child, &st)) < 0) {
                r = sbx__error(err, errno, "open `%s`", child);
                free(child);
                break;
            }
            names[depth++] = child;
            close(cur);
            cur = next;
            continue;
        }
        /* Empty: up, and remove it there. */
        if (depth == 0)
            break;
        next = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (next < 0) {
            r = sbx__error(err, errno, "open `..`");
            break;
        }
        close(cur);
        cur = next;
        depth--;
        if (unlinkat(cur, names[depth], AT_REMOVEDIR) < 0 && errno != ENOENT)
            r = sbx__error(err, errno, "rmdir `%s`", names[depth]);
        free(names[depth]);
        if (r < 0)
            break;
    }
    close(cur);
    while (depth > 0)
        free(names[--depth]);
    return r;
}

int sbx__rm_rf_at(int dirfd, const char *name, sbx_error *err)
{
    struct stat st;
    int fd, r;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : sbx__error(err, errno, "stat `%s`", name);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
            return sbx__error(err, errno, "unlink `%s`", name);
        return 0;
    }
    fd = open_for_removal(dirfd, name, &st);
    if (fd < 0)
        return sbx__error(err, errno, "open `%s`", name);
    r = rm_contents(fd, st.st_dev, err);
    if (r < 0)
        return r;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return sbx__error(err, errno, "rmdir `%s`", name);
    return 0;
}

int sbx__rm_rf(const char *path, sbx_error *err)
{
    return sbx__rm_rf_at(AT_FDCWD, path, err);
}

int sbx_rm_rf(const char *path, sbx_error *err)
{
    return sbx__rm_rf(path, err);
}

int sbx_rm_rf_at(int dirfd, const char *name, sbx_error *err)
{
    return sbx__rm_rf_at(dirfd, name, err);
}
