/* idmap.c — per-sandbox host uid ranges and idmapped image layers.
 *
 * With user namespaces on, root inside each sandbox is a different,
 * unprivileged host uid: sandbox k maps 0..65535 onto
 * SBX_UID_BASE + k*65536 ..  Image layers stay owned by host root on disk and
 * are mounted idmapped into each sandbox (mount_setattr MOUNT_ATTR_IDMAP), so
 * nothing is chowned per sandbox and no two sandboxes share a host uid. */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define SBX_UID_BASE  0x40000000u
#define SBX_UID_SLOTS 16384u

static unsigned slot_hash(const char *id)
{
    unsigned h = 2166136261u; /* FNV-1a: a start slot spread by id */

    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % SBX_UID_SLOTS;
}

/* The reservation of slot k is the file <run_dir>/uids/<k> holding the
 * sandbox's id, made with O_EXCL so that two creators never share a slot; the
 * sandbox's own run dir records the slot for sbx__uid_range_free(). */
int sbx__uid_range_alloc(const char *run_dir, const char *id, uid_t *ret_base, sbx_error *err)
{
    char dir[PATH_MAX], path[PATH_MAX];
    unsigned start = slot_hash(id);
    int r;

    snprintf(dir, sizeof(dir), "%s/uids", run_dir);
    r = sbx__mkdir_p(dir, 0700, err);
    if (r < 0)
        return r;
    for (unsigned i = 0; i < SBX_UID_SLOTS; i++) {
        unsigned slot = (start + i) % SBX_UID_SLOTS;
        _cleanup_close_ int fd = -1;
        char num[32];

        snprintf(path, sizeof(path), "%s/%u", dir, slot);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            if (errno == EEXIST)
                continue;
            return sbx__error(err, errno, "reserve uid range `%s`", path);
        }
        if (write(fd, id, strlen(id)) != (ssize_t)strlen(id)) {
            r = sbx__error(err, errno ? errno : EIO, "write `%s`", path);
            unlink(path);
            return r;
        }
        snprintf(path, sizeof(path), "%s/sandboxes/%s/uid-slot", run_dir, id);
        snprintf(num, sizeof(num), "%u", slot);
        _cleanup_close_ int sfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (sfd < 0 || write(sfd, num, strlen(num)) != (ssize_t)strlen(num)) {
            r = sbx__error(err, errno ? errno : EIO, "write `%s`", path);
            snprintf(path, sizeof(path), "%s/%u", dir, slot);
            unlink(path);
            return r;
        }
        *ret_base = SBX_UID_BASE + slot * SBX_UID_RANGE;
        return 0;
    }
    return sbx__error(err, EAGAIN, "no free uid range under `%s`", dir);
}

void sbx__uid_range_free(const char *run_dir, const char *id)
{
    char path[PATH_MAX], buf[32], owner[128];
    unsigned long slot;
    char *end;

    snprintf(path, sizeof(path), "%s/sandboxes/%s/uid-slot", run_dir, id);
    if (sbx__read_file_at(AT_FDCWD, path, buf, sizeof(buf), NULL) <= 0)
        return;
    slot = strtoul(buf, &end, 10);
    if (*end || slot >= SBX_UID_SLOTS)
        return;
    snprintf(path, sizeof(path), "%s/uids/%lu", run_dir, slot);
    /* Only release the slot while it is still ours. */
    if (sbx__read_file_at(AT_FDCWD, path, owner, sizeof(owner), NULL) >= 0 && !strcmp(owner, id))
        unlink(path);
}

int sbx__idmapped_tree(const char *path, int userns_fd, sbx_error *err)
{
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV,
        .userns_fd = (uint64_t)userns_fd,
    };
    _cleanup_close_ int fd = -1;

    fd = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (fd < 0)
        return sbx__error(err, errno, "open_tree `%s`", path);
    if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
        return sbx__error(err, errno, "idmap layer `%s`", path);
    return steal_fd(&fd);
}
