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

/* Removes the entries of the directory open at dfd.  Every entry is opened
 * with O_NOFOLLOW relative to its parent, and a directory on another device
 * (a mount point) is never descended into, so a symlink or a mount planted by
 * a sandbox cannot redirect the removal onto the host. */
static int rm_contents(int dfd, dev_t dev, int depth, sbx_error *err)
{
    _cleanup_closedir_ DIR *d = NULL;
    struct dirent *de;
    int r = 0;

    if (depth > 4096)
        return sbx__error(err, ELOOP, "remove: directory tree too deep");
    d = fdopendir(dfd);
    if (!d) {
        r = sbx__error(err, errno, "fdopendir");
        close(dfd);
        return r;
    }
    while ((de = readdir(d))) {
        struct stat st;

        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            return sbx__error(err, errno, "stat `%s`", de->d_name);
        }
        if (S_ISDIR(st.st_mode)) {
            int cfd;

            if (st.st_dev != dev)
                return sbx__error(err, EBUSY, "remove `%s`: a mount point", de->d_name);
            cfd = openat(dirfd(d), de->d_name,
                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
            if (cfd < 0 && errno == EPERM)
                cfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd < 0)
                return sbx__error(err, errno, "open `%s`", de->d_name);
            /* A directory without search permission still has to go. */
            if ((st.st_mode & 0700) != 0700)
                (void)fchmod(cfd, st.st_mode | 0700);
            r = rm_contents(cfd, dev, depth + 1, err);
            if (r < 0)
                return r;
            if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return sbx__error(err, errno, "rmdir `%s`", de->d_name);
        } else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
            return sbx__error(err, errno, "unlink `%s`", de->d_name);
        }
    }
    return 0;
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
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return sbx__error(err, errno, "open `%s`", name);
    r = rm_contents(fd, st.st_dev, 0, err);
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
