/* mounts.c — host directories and files bound into a sandbox (volumes,
 * allowed host paths).
 *
 * The caller's side opens each source beneath its trusted root with
 * openat2(RESOLVE_BENEATH): a symlink or `..` that leads out of the root
 * fails, and what is bound is the inode that was opened, not a path that
 * could be swapped before the mount.  open_tree(OPEN_TREE_CLONE) makes a
 * detached copy of it, mount_setattr() makes that nosuid, nodev, read-only
 * when asked and, with a user namespace, idmapped into it.  The child
 * places the trees inside its new root (before pivot_root) by walking the
 * destination one component at a time with RESOLVE_NO_SYMLINKS, making
 * what is missing, and moving the tree onto the fd it ended at: a symlink
 * planted in a shared volume by another sandbox while this one starts
 * (CVE-2021-30465) makes the create fail, it never moves a bind. */
#include "internal.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sched.h>

#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif

/* Whether path's components are all plain names: no "", ".", "..". */
static bool plain_components(const char *p)
{
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += n;
        if (*p == '/' && *++p == '\0')
            return false; /* a trailing slash */
    }
    return true;
}

static bool under(const char *dst, const char *dir)
{
    size_t n = strlen(dir);

    return !strncmp(dst, dir, n) && (dst[n] == '\0' || dst[n] == '/');
}

int sbx__mounts_validate(const struct sbx_mount *m, size_t n, sbx_error *err)
{
    if (n > SBX_MAX_MOUNTS)
        return sbx__error(err, E2BIG, "more than %d mounts", SBX_MAX_MOUNTS);
    if (n && !m)
        return sbx__error(err, EINVAL, "mounts missing");
    for (size_t i = 0; i < n; i++) {
        const char *dst = m[i].dst;

        if (!m[i].root || m[i].root[0] != '/')
            return sbx__error(err, EINVAL, "mount source root `%s` is not absolute",
                              m[i].root ? m[i].root : "(null)");
        if (m[i].path && *m[i].path && (m[i].path[0] == '/' || !plain_components(m[i].path)))
            return sbx__error(err, EINVAL, "mount source path `%s` is not a plain relative path",
                              m[i].path);
        if (!dst || dst[0] != '/' || strlen(dst) >= PATH_MAX || !dst[1] ||
            !plain_components(dst + 1))
            return sbx__error(err, EINVAL,
                              "mount destination `%s` must be an absolute path without `.`, "
                              "`..` or empty components, and not `/`",
                              dst ? dst : "(null)");
        if (under(dst, "/proc") || under(dst, "/sys") || under(dst, "/dev"))
            return sbx__error(err, EINVAL, "mount destination `%s` is under /proc, /sys or /dev",
                              dst);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(m[j].dst, dst))
                return sbx__error(err, EINVAL, "two mounts at `%s`", dst);
    }
    return 0;
}

int sbx__mount_source(const struct sbx_mount *m, int userns_fd, sbx_error *err)
{
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (m->readonly ? MOUNT_ATTR_RDONLY : 0),
    };
    const char *path = m->path && *m->path ? m->path : ".";
    _cleanup_close_ int root = -1, src = -1, tree = -1;

    root = open(m->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return sbx__error(err, errno, "open mount root `%s`", m->root);
    src = (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
    if (src < 0)
        return sbx__error(err, errno == EXDEV ? EPERM : errno, "open `%s` beneath `%s`%s", path,
                          m->root, errno == EXDEV ? " (it leads out of it)" : "");
    tree =
        (int)syscall(SYS_open_tree, src, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (tree < 0)
        return sbx__error(err, errno, "open_tree `%s/%s`", m->root, path);
    if (userns_fd >= 0) {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = (uint64_t)userns_fd;
    }
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
        return sbx__error(err, errno, "set the attributes of the bind of `%s/%s`", m->root, path);
    return steal_fd(&tree);
}

/* Opens (making it when missing) name in dir, as a directory or, for the
 * last component of a file's bind, a file: O_PATH, never through a link. */
static int open_or_make(int dir, const char *name, bool as_dir, sbx_error *err, const char *dst)
{
    struct open_how how = {
        /* (no O_NOFOLLOW: with O_PATH it would open a symlink itself;
         * RESOLVE_NO_SYMLINKS refuses one with ELOOP) */
        .flags = O_PATH | O_CLOEXEC | (as_dir ? O_DIRECTORY : 0),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    struct stat st;
    int fd;

    for (int attempt = 0; attempt < 2; attempt++) {
        fd = (int)syscall(SYS_openat2, dir, name, &how, sizeof(how));
        if (fd >= 0)
            break;
        if (errno == ELOOP || errno == ENOTDIR || errno == EXDEV) {
            /* A symlink: ELOOP; O_DIRECTORY on a file: ENOTDIR. */
            if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                return sbx__error(err, ELOOP, "mount destination `%s` crosses a symlink (`%s`)",
                                  dst, name);
            return sbx__error(err, errno, "mount destination `%s`: `%s` is not a %s", dst, name,
                              as_dir ? "directory" : "file");
        }
        if (errno != ENOENT || attempt > 0)
            return sbx__error(err, errno, "open mount destination `%s` at `%s`", dst, name);
        if (as_dir) {
            if (mkdirat(dir, name, 0755) < 0 && errno != EEXIST)
                return sbx__error(err, errno, "make mount destination `%s` at `%s`", dst, name);
        } else {
            int f = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (f < 0 && errno != EEXIST)
                return sbx__error(err, errno, "make mount destination `%s`", dst);
            if (f >= 0)
                close(f);
        }
    }
    if (!as_dir && (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode))) {
        close(fd);
        return sbx__error(err, EISDIR, "mount destination `%s` is a directory, its source a file",
                          dst);
    }
    return fd;
}

void sbx__make_workdir(const char *path)
{
    char buf[PATH_MAX], *name, *save = NULL;
    sbx_error ignored = {0};
    int dir, next;

    /* Made as a mount point is, component by component and never through
     * a symlink; one that crosses one is left to chdir to judge. */
    if (!path || path[0] != '/' || !path[1] || strlen(path) >= sizeof(buf))
        return;
    snprintf(buf, sizeof(buf), "%s", path + 1);
    dir = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (name = strtok_r(buf, "/", &save); dir >= 0 && name; name = strtok_r(NULL, "/", &save)) {
        if (!strcmp(name, ".") || !strcmp(name, ".."))
            break;
        next = open_or_make(dir, name, true, &ignored, path);
        close(dir);
        dir = next;
    }
    if (dir >= 0)
        close(dir);
}

int sbx__mount_place(const char *dst, int tree, sbx_error *err)
{
    char buf[PATH_MAX], *name, *save = NULL;
    struct stat st;
    bool is_dir;
    int dir, next, r;

    if (fstat(tree, &st) < 0)
        return sbx__error(err, errno, "stat the bind for `%s`", dst);
    is_dir = S_ISDIR(st.st_mode);
    snprintf(buf, sizeof(buf), "%s", dst + 1);
    dir = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return sbx__error(err, errno, "open the new root");
    name = strtok_r(buf, "/", &save);
    while (name) {
        char *following = strtok_r(NULL, "/", &save);
        next = open_or_make(dir, name, following ? true : is_dir, err, dst);
        close(dir);
        if (next < 0)
            return next;
        dir = next;
        name = following;
    }
    r = (int)syscall(SYS_move_mount, tree, "", dir, "",
                     MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    if (r < 0)
        r = sbx__error(err, errno, "bind at `%s`", dst);
    close(dir);
    return r < 0 ? r : 0;
}

static size_t depth(const char *p)
{
    size_t n = 0;

    for (; *p; p++)
        n += *p == '/';
    return n;
}

int sbx__mounts_place(const struct sbx_mount *m, const int *fds, size_t n, sbx_error *err)
{
    bool done[SBX_MAX_MOUNTS] = {false};

    /* Parents first: the shallowest destination not yet placed, each turn. */
    for (size_t k = 0; k < n; k++) {
        size_t best = n;
        int r;

        for (size_t i = 0; i < n; i++)
            if (!done[i] && (best == n || depth(m[i].dst) < depth(m[best].dst)))
                best = i;
        done[best] = true;
        if ((r = sbx__mount_place(m[best].dst, fds[best], err)) < 0)
            return r;
    }
    return 0;
}

/* ---- mounts into a running sandbox (mount_image) ---- */

#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef FSCONFIG_SET_STRING
#define FSCONFIG_SET_STRING 1
#endif
#ifndef FSCONFIG_CMD_CREATE
#define FSCONFIG_CMD_CREATE 6
#endif

/* A detached overlay of the layers (trees: idmapped already, top-most
 * first) over upper and work, nosuid and nodev. */
static int overlay_tree(const int *layer_fds, size_t n, const char *upper, const char *work,
                        sbx_error *err)
{
    char lower[8192];
    size_t off = 0;
    _cleanup_close_ int fs = -1;
    int mnt;

    for (size_t i = 0; i < n; i++) {
        off += (size_t)snprintf(lower + off, sizeof(lower) - off, "%s/proc/self/fd/%d",
                                i ? ":" : "", layer_fds[i]);
        if (off >= sizeof(lower))
            return sbx__error(err, E2BIG, "too many layers to mount");
    }
    fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        return sbx__error(err, errno, "fsopen overlay");
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "lowerdir", lower, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "workdir", work, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return sbx__error(err, errno, "make an overlay of %zu layers", n);
    mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (mnt < 0)
        return sbx__error(err, errno, "fsmount the overlay");
    return mnt;
}

/* In a child: joins the sandbox's user namespace (as its root) and mount
 * namespace, and moves tree onto dst there.  Reports on fd, exits. */
__attribute__((noreturn)) static void place_in(pid_t init, bool userns, int tree, const char *dst,
                                               int fd)
{
    char path[64];
    sbx_error e = {0};
    int user_ns = -1, mnt_ns;

    /* Both opened first: once inside, /proc is the sandbox's.  The mount
     * namespace is joined as host root (who may join any); the user
     * namespace then, so that what is made is its root's. */
    snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)init);
    mnt_ns = open(path, O_RDONLY | O_CLOEXEC);
    if (userns) {
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)init);
        user_ns = open(path, O_RDONLY | O_CLOEXEC);
    }
    /* (setns to a mount namespace puts root and cwd at its root) */
    if (mnt_ns < 0 || (userns && user_ns < 0) || setns(mnt_ns, CLONE_NEWNS) < 0 || chdir("/") < 0) {
        sbx__error(&e, errno, "join the sandbox's mount namespace");
        goto out;
    }
    if (userns &&
        (setns(user_ns, CLONE_NEWUSER) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
        sbx__error(&e, errno, "join the sandbox's user namespace");
        goto out;
    }
    (void)sbx__mount_place(dst, tree, &e);
out:
    (void)!write(fd, &e, sizeof(e));
    _exit(e.code ? 1 : 0);
}

int sbx_sandbox_mount_image(sbx_sandbox *sb, const char *const *layers, const char *dst,
                            sbx_error *err)
{
    char dir[PATH_MAX], upper[PATH_MAX], work[PATH_MAX], path[64];
    _cleanup_close_ int userns_fd = -1, tree = -1;
    int layer_fds[SBX_MAX_LAYERS], sv[2] = {-1, -1}, r;
    size_t n = 0, made = 0;
    uid_t owner = sb->userns ? sb->uid_base : 0;
    struct sbx_mount check = {.root = "/", .dst = dst};
    sbx_error e = {0};
    pid_t pid;

    if ((r = sbx__mounts_validate(&check, 1, err)) < 0)
        return r;
    while (layers && layers[n])
        if (++n > SBX_MAX_LAYERS)
            return sbx__error(err, E2BIG, "more than %d layers", SBX_MAX_LAYERS);
    if (sb->finished)
        return sbx__error(err, ESRCH, "sandbox `%s` has finished", sb->id);
    /* The mount's own writable layer, beside the sandbox's: what is
     * written there is its root's (and goes with the sandbox). */
    for (int k = 0;; k++) {
        snprintf(dir, sizeof(dir), "%s/mounts/%d", sb->state_dir, k);
        if (k > 4096)
            return sbx__error(err, EMFILE, "too many mounts in sandbox `%s`", sb->id);
        snprintf(upper, sizeof(upper), "%s/mounts", sb->state_dir);
        (void)mkdir(upper, 0700);
        if (mkdir(dir, 0700) == 0)
            break;
        if (errno != EEXIST)
            return sbx__error(err, errno, "mkdir `%s`", dir);
    }
    snprintf(upper, sizeof(upper), "%s/upper", dir);
    snprintf(work, sizeof(work), "%s/work", dir);
    if (mkdir(upper, 0755) < 0 || chmod(upper, 0755) < 0 || mkdir(work, 0700) < 0 ||
        chown(upper, owner, owner) < 0 || chown(work, owner, owner) < 0 ||
        chown(dir, owner, owner) < 0)
        return sbx__error(err, errno, "make `%s`", dir);
    if (sb->userns) {
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)sb->pid);
        userns_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (userns_fd < 0)
            return sbx__error(err, errno, "open `%s`", path);
    }
    if (n == 0) {
        /* No image: an empty directory (its own, on the host). */
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
        tree = (int)syscall(SYS_open_tree, AT_FDCWD, upper, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (tree < 0 ||
            syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
            return sbx__error(err, errno, "bind `%s`", upper);
    } else {
        for (; made < n; made++) {
            if (sb->userns) {
                r = sbx__idmapped_tree(layers[made], userns_fd, err);
            } else {
                r = (int)syscall(SYS_open_tree, AT_FDCWD, layers[made],
                                 OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
                if (r < 0)
                    r = sbx__error(err, errno, "open_tree `%s`", layers[made]);
            }
            if (r < 0)
                goto out;
            layer_fds[made] = r;
        }
        r = overlay_tree(layer_fds, n, upper, work, err);
        if (r < 0)
            goto out;
        tree = r;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        r = sbx__error(err, errno, "socketpair");
        goto out;
    }
    pid = fork();
    if (pid < 0) {
        r = sbx__error(err, errno, "fork");
        goto out;
    }
    if (pid == 0)
        place_in(sb->pid, sb->userns, tree, dst, sv[1]);
    close(sv[1]);
    sv[1] = -1;
    if (read(sv[0], &e, sizeof(e)) != (ssize_t)sizeof(e))
        e = (sbx_error){.code = EPROTO, .message = "the mount helper died"};
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (e.code) {
        if (err)
            *err = e;
        r = -e.code;
    } else {
        r = 0;
    }
out:
    for (size_t i = 0; i < made; i++)
        close(layer_fds[i]);
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    return r;
}
