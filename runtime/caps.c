/* caps.c — the capabilities a sandboxed process keeps.
 *
 * Docker's default set: enough for a root workload to install packages and
 * manage its own files and users, nothing that reaches beyond the sandbox
 * (no CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE, ...).  In a user
 * namespace the capabilities are relative to it; with no_userns they are
 * real root's, which is why the bounding set matters most: it is what even
 * a setuid-root binary or file capabilities can never get back. */
#include "internal.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

const int sbx__default_caps[] = {
    CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,
    CAP_MKNOD,   CAP_NET_RAW,      CAP_SETGID,           CAP_SETUID,
    CAP_SETFCAP, CAP_SETPCAP,      CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
    CAP_KILL,    CAP_AUDIT_WRITE,
};
const size_t sbx__n_default_caps = SBX_ARRAY_SIZE(sbx__default_caps);

static uint64_t default_caps_mask(void)
{
    uint64_t mask = 0;

    for (size_t i = 0; i < sbx__n_default_caps; i++)
        mask |= UINT64_C(1) << sbx__default_caps[i];
    return mask;
}

/* The highest capability this kernel knows.  /proc may not be mounted yet in
 * a sandbox being set up; the headers' CAP_LAST_CAP is then the fallback and
 * PR_CAPBSET_DROP's EINVAL tells us where the kernel's list really ends. */
static int last_cap(void)
{
    _cleanup_close_ int fd = -1;
    char buf[16];
    ssize_t n;
    long v;
    char *end;

    fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return CAP_LAST_CAP;
    n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return CAP_LAST_CAP;
    buf[n] = '\0';
    errno = 0;
    v = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || v < 0 || v > 63)
        return CAP_LAST_CAP;
    return (int)v;
}

static int drop_bounding_set(uint64_t keep)
{
    int last = last_cap(), r;

    for (int cap = 0; cap <= last; cap++) {
        if (keep & (UINT64_C(1) << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0)
            continue;
        if (errno == EINVAL) /* past the kernel's last capability */
            break;
        if (errno != EPERM)
            return -errno;
        /* Dropping needs CAP_SETPCAP even for a capability that is gone
         * already: that one is fine. */
        r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (r != 0)
            return r < 0 ? -errno : -EPERM;
    }
    return 0;
}

/* Raw capget/capset: no libcap state to allocate in the child between fork
 * and execve. */
static int set_process_caps(uint64_t keep)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {{0}};
    uint64_t permitted;

    if (syscall(SYS_capget, &hdr, data) < 0)
        return -errno;
    permitted = (uint64_t)data[0].permitted | (uint64_t)data[1].permitted << 32;

    /* A caller that lacks one of the defaults (a daemon that was itself
     * started with fewer) cannot grant it; the sandbox just goes without. */
    keep &= permitted;

    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
        data[i].permitted = (uint32_t)(keep >> (32 * i));
        data[i].effective = data[i].permitted;
        data[i].inheritable = 0;
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -errno;
    return 0;
}

int sbx__caps_drop(void)
{
    uint64_t keep = default_caps_mask();
    int r;

    /* The bounding set first, while CAP_SETPCAP is still effective. */
    r = drop_bounding_set(keep);
    if (r < 0)
        return r;

    /* Ambient capabilities survive execve of unprivileged binaries; none may
     * leak in from the daemon's environment.  EINVAL: a kernel before 4.3,
     * which has no ambient set. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -errno;

    return set_process_caps(keep);
}

int sbx__caps_inherited(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {{0}};
    uint64_t permitted, inheritable;

    if (syscall(SYS_capget, &hdr, data) < 0)
        return -errno;
    permitted = (uint64_t)data[0].permitted | (uint64_t)data[1].permitted << 32;
    inheritable = (uint64_t)data[0].inheritable | (uint64_t)data[1].inheritable << 32;
    /* Init dropped them (and the bounding set, which no process gets back,
     * and the ambient set, which cannot exceed an empty inheritable one). */
    if ((permitted & ~default_caps_mask()) == 0 && inheritable == 0)
        return 0;
    return sbx__caps_drop();
}
