/* rootfs.c — the sandbox's root filesystem, built inside its own mount
 * namespace: an overlay of the image's read-only layers and a fresh upper
 * dir, a fresh /proc with Docker's masked and read-only paths, a read-only
 * /sys, a minimal /dev, a /tmp, then pivot_root with the old root detached.
 * Everything here runs in the sandbox's first process before it becomes
 * init, with the sandbox's (namespaced) privileges. */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

/* Docker's defaults (moby oci/defaults.go): hidden entirely... */
static const char *const masked_paths[] = {
    "proc/asound",
    "proc/acpi",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
};
/* ...and visible but read-only. */
static const char *const readonly_paths[] = {
    "proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger",
};

static const char *const devices[] = {"null", "zero", "full", "random", "urandom", "tty"};

static const struct {
    const char *target, *name;
} dev_links[] = {
    {"/proc/self/fd", "fd"},       {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
    {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
};

static int do_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                    const char *data, sbx_error *err)
{
    if (mount(src, dst, type, flags, data) < 0)
        return sbx__error(err, errno, "mount %s on `%s`", type ? type : src ? src : "(bind)", dst);
    return 0;
}

static int ensure_dir(const char *path, sbx_error *err)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return sbx__error(err, errno, "mkdir `%s`", path);
    return 0;
}

static int ensure_file(const char *path, sbx_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

    if (fd < 0)
        return sbx__error(err, errno, "create `%s`", path);
    close(fd);
    return 0;
}

/* Binds src (a directory of the sandbox's shared tmpfs) at dst with its
 * own mount flags. */
static int bind_with(const char *src, const char *dst, unsigned long flags, sbx_error *err)
{
    int r = do_mount(src, dst, NULL, MS_BIND, NULL, err);

    if (r < 0)
        return r;
    return do_mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | flags, NULL, err);
}

/* One tmpfs for /dev, /dev/shm, /tmp and the masked directories, mounted
 * at RUN/tmpfs (gone with the old root at pivot_root) and bound from its
 * subdirectories, each with its own mount flags.  Every tmpfs instance is
 * a superblock, and every superblock a shrinker for which each memory
 * cgroup on the host keeps a slot (alloc_shrinker_info): five instances
 * per sandbox made the kernel's memory per sandbox grow with the number of
 * sandboxes (~200 KiB each at 1000).  Its size is bounded by the sandbox's
 * memory limit: tmpfs pages are charged to the writer's cgroup.  cwd: the
 * run dir. */
static int shared_tmpfs(sbx_error *err)
{
    static const struct {
        const char *name;
        mode_t mode;
    } dirs[] = {
        {"tmpfs/dev", 0755}, {"tmpfs/shm", 01777}, {"tmpfs/tmp", 01777}, {"tmpfs/masked", 0}};
    int r;

    if ((r = ensure_dir("tmpfs", err)) < 0 ||
        (r = do_mount("tmpfs", "tmpfs", "tmpfs", MS_NOSUID, "mode=700", err)) < 0)
        return r;
    for (size_t i = 0; i < SBX_ARRAY_SIZE(dirs); i++)
        if (mkdir(dirs[i].name, 0700) < 0 || chmod(dirs[i].name, dirs[i].mode) < 0)
            return sbx__error(err, errno, "make `%s`", dirs[i].name);
    return 0;
}

static int setup_dev(sbx_error *err)
{
    char path[64];
    int r;

    r = bind_with("../tmpfs/dev", "dev", MS_NOSUID | MS_NOEXEC | MS_STRICTATIME, err);
    if (r < 0)
        return r;
    /* Device nodes cannot be made inside a user namespace: bind the host's. */
    for (size_t i = 0; i < SBX_ARRAY_SIZE(devices); i++) {
        char src[64];

        snprintf(path, sizeof(path), "dev/%s", devices[i]);
        snprintf(src, sizeof(src), "/dev/%s", devices[i]);
        if ((r = ensure_file(path, err)) < 0 ||
            (r = do_mount(src, path, NULL, MS_BIND, NULL, err)) < 0)
            return r;
    }
    for (size_t i = 0; i < SBX_ARRAY_SIZE(dev_links); i++) {
        snprintf(path, sizeof(path), "dev/%s", dev_links[i].name);
        if (symlink(dev_links[i].target, path) < 0)
            return sbx__error(err, errno, "symlink `%s`", path);
    }
    if ((r = ensure_dir("dev/pts", err)) < 0 ||
        (r = do_mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                      "newinstance,ptmxmode=0666,mode=0620,gid=5", err)) < 0)
        return r;
    if ((r = ensure_dir("dev/shm", err)) < 0 ||
        (r = bind_with("../tmpfs/shm", "dev/shm", MS_NOSUID | MS_NODEV | MS_NOEXEC, err)) < 0)
        return r;
    if ((r = ensure_dir("dev/mqueue", err)) < 0 ||
        (r = do_mount("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
                      err)) < 0)
        return r;
    return 0;
}

/* The host's file, read-only, over the image's /etc/resolv.conf (made
 * when missing; a symlink, as systemd-resolved's images have, replaced). */
static int bind_resolv_conf(const char *src, sbx_error *err)
{
    struct stat st;
    int r;

    if ((r = ensure_dir("etc", err)) < 0)
        return r;
    /* Opening the image's own file for writing would copy it up: only a
     * missing one (or a link) is made. */
    r = lstat("etc/resolv.conf", &st);
    if (r < 0 && errno != ENOENT)
        return sbx__error(err, errno, "stat `/etc/resolv.conf`");
    if (r == 0 && !S_ISREG(st.st_mode) && unlink("etc/resolv.conf") < 0)
        return sbx__error(err, errno, "replace `/etc/resolv.conf`");
    if ((r < 0 || !S_ISREG(st.st_mode)) && (r = ensure_file("etc/resolv.conf", err)) < 0)
        return r;
    if ((r = do_mount(src, "etc/resolv.conf", NULL, MS_BIND, NULL, err)) < 0 ||
        (r = do_mount(NULL, "etc/resolv.conf", NULL,
                      MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
                      err)) < 0)
        return r;
    return 0;
}

static int mask_paths(sbx_error *err)
{
    for (size_t i = 0; i < SBX_ARRAY_SIZE(masked_paths); i++) {
        const char *p = masked_paths[i];
        struct stat st;
        int r;

        if (lstat(p, &st) < 0) {
            if (errno == ENOENT)
                continue;
            return sbx__error(err, errno, "stat `/%s`", p);
        }
        if (S_ISDIR(st.st_mode))
            r = bind_with("../tmpfs/masked", p, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, err);
        else
            r = do_mount("dev/null", p, NULL, MS_BIND, NULL, err);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < SBX_ARRAY_SIZE(readonly_paths); i++) {
        const char *p = readonly_paths[i];
        int r;

        if (access(p, F_OK) < 0)
            continue;
        if ((r = do_mount(p, p, NULL, MS_BIND | MS_REC, NULL, err)) < 0 ||
            (r = do_mount(NULL, p, NULL,
                          MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
                          err)) < 0)
            return r;
    }
    return 0;
}

int sbx__rootfs_setup(const struct sbx__rootfs *p, sbx_error *err)
{
    char opts[4096], path[PATH_MAX];
    size_t off = 0;
    int r;

    /* Nothing mounted in here propagates to the host, and nothing the host
     * mounts later propagates in. */
    r = do_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, err);
    if (r < 0)
        return r;

    /* The capped writable layer's file system: mounted by the caller after
     * this namespace was made, so it comes as a tree. */
    if (p->disk_fd >= 0 &&
        syscall(SYS_move_mount, p->disk_fd, "", AT_FDCWD, p->disk_dir, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return sbx__error(err, errno, "move the writable layer's file system to `%s`", p->disk_dir);

    /* Lower layers are named by short relative paths (lower/0:lower/1...)
     * so that many layers still fit overlay's one-page option string. */
    if (chdir(p->run_dir) < 0)
        return sbx__error(err, errno, "chdir `%s`", p->run_dir);
    off += (size_t)snprintf(opts, sizeof(opts), "lowerdir=");
    for (size_t i = 0; i < p->n_layers; i++) {
        const char *lower = p->layers[i];

        if (p->userns) {
            snprintf(path, sizeof(path), "lower/%zu", i);
            if (syscall(SYS_move_mount, p->layer_fds[i], "", AT_FDCWD, path,
                        MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return sbx__error(err, errno, "move idmapped layer `%s` to `%s/%s`", p->layers[i],
                                  p->run_dir, path);
            lower = path;
        }
        off += (size_t)snprintf(opts + off, sizeof(opts) - off, "%s%s", i ? ":" : "", lower);
        if (off >= sizeof(opts))
            return sbx__error(err, E2BIG, "overlay options for %zu layers", p->n_layers);
    }
    /* volatile: the writable layer never outlives the sandbox (nor a host
     * crash), so overlay need not sync it, which makes unmounting it at the
     * sandbox's end cheap. */
    off += (size_t)snprintf(opts + off, sizeof(opts) - off, ",upperdir=%s,workdir=%s,volatile%s",
                            p->upper, p->work, p->userns ? ",userxattr" : "");
    if (off >= sizeof(opts))
        return sbx__error(err, E2BIG, "overlay options for %zu layers", p->n_layers);
    r = do_mount("overlay", "rootfs", "overlay", MS_NODEV, opts, err);
    if (r < 0 || (r = shared_tmpfs(err)) < 0)
        return r;

    if (chdir("rootfs") < 0)
        return sbx__error(err, errno, "chdir `%s/rootfs`", p->run_dir);
    if ((r = ensure_dir("proc", err)) < 0 ||
        (r = do_mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err)) < 0)
        return r;
    if ((r = ensure_dir("sys", err)) < 0)
        return r;
    if (p->sysfs_fd >= 0) {
        /* A pre-made network namespace's own sysfs (read-only already):
         * the sandbox may not mount one of a namespace it does not own. */
        if (syscall(SYS_move_mount, p->sysfs_fd, "", AT_FDCWD, "sys", MOVE_MOUNT_F_EMPTY_PATH) < 0)
            return sbx__error(err, errno, "move the network namespace's sysfs to `/sys`");
    } else if ((r = do_mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                             NULL, err)) < 0)
        return r;
    if ((r = ensure_dir("dev", err)) < 0 || (r = setup_dev(err)) < 0)
        return r;
    if ((r = ensure_dir("tmp", err)) < 0 ||
        (r = bind_with("../tmpfs/tmp", "tmp", MS_NOSUID | MS_NODEV, err)) < 0)
        return r;
    if ((r = mask_paths(err)) < 0)
        return r;
    if (p->resolv_conf && (r = bind_resolv_conf(p->resolv_conf, err)) < 0)
        return r;
    if ((r = sbx__mounts_place(p->mounts, p->mount_fds, p->n_mounts, err)) < 0)
        return r;
    sbx__make_workdir(p->workdir);

    /* pivot_root(".", ".") stacks the old root on top of the new one; the
     * detach then drops it, and with it every host path. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return sbx__error(err, errno, "pivot_root to `%s/rootfs`", p->run_dir);
    if (umount2(".", MNT_DETACH) < 0)
        return sbx__error(err, errno, "detach the old root");
    if (chdir("/") < 0)
        return sbx__error(err, errno, "chdir `/`");
    return 0;
}
