/* disk.c — file systems of a fixed size: an ext4 image on a loop device.
 *
 * What caps a sandbox's writable layer (cfg.disk_mib) and a volume's size:
 * past it, writes fail with ENOSPC inside, and the host's disk never fills.
 * The image is a sparse file made by mkfs.ext4 (e2fsprogs: there is no
 * well-kept library for making one), attached with LOOP_CONFIGURE and
 * LO_FLAGS_AUTOCLEAR, so that the loop device goes with the last mount of
 * it.  An image already on a loop device (a mount of it lives on somewhere,
 * say in a sandbox's mount namespace) is mounted through that device again:
 * the kernel then shares the one superblock.  Two loop devices on one image
 * would be two file systems writing the same blocks. */
#include "internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define DISK_MIN_MIB 16

bool sbx_is_mount_point(const char *dir)
{
    char parent[PATH_MAX];
    struct stat a, b;

    snprintf(parent, sizeof(parent), "%s/..", dir);
    return stat(dir, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

/* mkfs.ext4 on img, quietly. */
static int make_ext4(const char *img, sbx_error *err)
{
    char *const argv[] = {
        "mkfs.ext4", "-q", "-F",
        "-m",        "0",  "-L",
        "sandboxd",  "-E", "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1",
        (char *)img, NULL};
    char *const envp[] = {"PATH=/usr/sbin:/sbin:/usr/bin:/bin", "LC_ALL=C", NULL};
    posix_spawn_file_actions_t fa;
    int status, r;
    pid_t pid;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    r = posix_spawnp(&pid, "mkfs.ext4", &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0)
        return sbx__error(err, r, "run mkfs.ext4 (e2fsprogs)");
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return sbx__error(err, errno, "wait for mkfs.ext4");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return sbx__error(err, EIO, "mkfs.ext4 `%s` failed", img);
    return 0;
}

int sbx_disk_create(const char *img, uint64_t size_mib, sbx_error *err)
{
    _cleanup_close_ int fd = -1;
    int r;

    if (size_mib < DISK_MIN_MIB || size_mib > (UINT64_MAX >> 21))
        return sbx__error(err, EINVAL, "a disk of %llu MiB (at least %d)",
                          (unsigned long long)size_mib, DISK_MIN_MIB);
    fd = open(img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return sbx__error(err, errno, "create `%s`", img);
    if (ftruncate(fd, (off_t)(size_mib << 20)) < 0) {
        r = sbx__error(err, errno, "size `%s`", img);
        unlink(img);
        return r;
    }
    if ((r = make_ext4(img, err)) < 0)
        unlink(img);
    return r;
}

/* The loop device already backed by the file st describes, into dev. */
static bool loop_of(const struct stat *st, char *dev, size_t size)
{
    _cleanup_closedir_ DIR *dh = opendir("/sys/block");
    struct dirent *de;

    while (dh && (de = readdir(dh))) {
        struct loop_info64 info;
        _cleanup_close_ int fd = -1;

        if (strncmp(de->d_name, "loop", 4))
            continue;
        snprintf(dev, size, "/dev/%s", de->d_name);
        fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && ioctl(fd, LOOP_GET_STATUS64, &info) == 0 && info.lo_device == st->st_dev &&
            info.lo_inode == st->st_ino)
            return true;
    }
    return false;
}

int sbx_disk_mount(const char *img, const char *dir, sbx_error *err)
{
    _cleanup_close_ int ctl = -1, ifd = -1, lfd = -1;
    char dev[64];
    struct stat st;

    if (sbx_is_mount_point(dir))
        return 0;
    if (stat(img, &st) < 0)
        return sbx__error(err, errno, "stat `%s`", img);
    if (loop_of(&st, dev, sizeof(dev))) {
        if (mount(dev, dir, "ext4", MS_NOSUID | MS_NODEV, NULL) < 0)
            return sbx__error(err, errno, "mount `%s` (%s) at `%s`", img, dev, dir);
        return 0;
    }
    ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return sbx__error(err, errno, "open /dev/loop-control");
    ifd = open(img, O_RDWR | O_CLOEXEC);
    if (ifd < 0)
        return sbx__error(err, errno, "open `%s`", img);
    for (int attempt = 0; attempt < 16 && lfd < 0; attempt++) {
        struct loop_config cfg = {.fd = (unsigned)ifd, .info.lo_flags = LO_FLAGS_AUTOCLEAR};
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);

        if (n < 0)
            return sbx__error(err, errno, "find a free loop device");
        snprintf(dev, sizeof(dev), "/dev/loop%d", n);
        lfd = open(dev, O_RDWR | O_CLOEXEC);
        if (lfd < 0)
            return sbx__error(err, errno, "open `%s`", dev);
        snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", img);
        if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
            break;
        if (errno != EBUSY) /* (another took that one meanwhile: the next) */
            return sbx__error(err, errno, "attach `%s` to `%s`", img, dev);
        close(lfd);
        lfd = -1;
    }
    if (lfd < 0)
        return sbx__error(err, EBUSY, "no loop device for `%s`", img);
    /* Mounted while lfd is open: the device clears itself at its last close
     * without a mount. */
    if (mount(dev, dir, "ext4", MS_NOSUID | MS_NODEV, NULL) < 0)
        return sbx__error(err, errno, "mount `%s` (%s) at `%s`", img, dev, dir);
    return 0;
}
