/* seccomp.c — the sandbox's system call filter.
 *
 * The policy is an allowlist at least as strict as Docker's default profile
 * for a container without CAP_SYS_ADMIN and the other capabilities we never
 * grant: anything not listed fails with EPERM.  It covers only the native
 * architecture: a syscall made through any other ABI (i386's int $0x80, x32)
 * kills the process, so 32-bit programs cannot run in a sandbox, which is
 * stricter than Docker (see build_filter for why).  libseccomp compiles the
 * policy once per process into a classic BPF program kept in static memory,
 * so that the forked child that becomes a workload only has to hand that
 * program to the kernel: no allocation, no libseccomp state, nothing that can
 * fail half-way between fork and execve. */
#include "internal.h"

#include <limits.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

/* Syscalls allowed whatever their arguments.  Names this libseccomp does not
 * know are skipped; names missing on the native architecture (on x86_64 the
 * *32, *64 and *_time64 variants of i386, socketcall, ipc) add no rule, and
 * stay for a build on an architecture that has them.  Grouped by purpose, so
 * clang-format is kept from one name per line. */
// clang-format off
static const char *const allowed_syscalls[] = {
    /* Process life cycle.  clone, clone3, personality and unshare are
     * handled below because their arguments matter. */
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "waitpid",
    "restart_syscall", "set_tid_address", "set_robust_list", "get_robust_list", "rseq",
    "arch_prctl", "set_thread_area", "get_thread_area", "modify_ldt", "prctl", "seccomp",

    /* Identity: changing ids only works within what the capabilities and the
     * user namespace allow, so the calls themselves are harmless. */
    "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
    "getresgid", "getgroups", "getuid32", "geteuid32", "getgid32", "getegid32", "getresuid32",
    "getresgid32", "getgroups32", "setuid", "setgid", "setreuid", "setregid", "setresuid",
    "setresgid", "setgroups", "setfsuid", "setfsgid", "setuid32", "setgid32", "setreuid32",
    "setregid32", "setresuid32", "setresgid32", "setgroups32", "setfsuid32", "setfsgid32",
    "capget", "capset", "getsid", "setsid", "getpgid", "setpgid", "getpgrp", "umask",

    /* Scheduling and resource limits of the sandbox's own processes; the
     * NUMA memory policy calls need CAP_SYS_NICE in Docker and stay out. */
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getattr", "sched_setattr",
    "sched_getparam", "sched_setparam", "sched_getscheduler", "sched_setscheduler",
    "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "getpriority", "setpriority", "ioprio_get", "ioprio_set",
    "getrlimit", "setrlimit", "ugetrlimit", "prlimit64", "getrusage", "times", "getcpu",

    /* Memory management of the caller's own address space. */
    "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync",
    "mlock", "mlock2", "mlockall", "munlock", "munlockall", "remap_file_pages", "membarrier",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "memfd_create", "memfd_secret",
    "map_shadow_stack", "process_mrelease",

    /* Files and directories: access control is the filesystem's job. */
    "open", "openat", "openat2", "creat", "close", "close_range", "access", "faccessat",
    "faccessat2", "stat", "fstat", "lstat", "newfstatat", "stat64", "fstat64", "lstat64",
    "fstatat64", "statx", "statfs", "fstatfs", "statfs64", "fstatfs64", "readlink",
    "readlinkat", "getdents", "getdents64", "getcwd", "chdir", "fchdir", "mkdir", "mkdirat",
    "rmdir", "rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat", "symlink",
    "symlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown",
    "fchownat", "chown32", "fchown32", "lchown32", "truncate", "ftruncate", "truncate64",
    "ftruncate64", "fallocate", "fadvise64", "fadvise64_64", "readahead", "utime", "utimes",
    "utimensat", "utimensat_time64", "futimesat", "mknod", "mknodat", "flock", "fsync",
    "fdatasync", "sync", "syncfs", "sync_file_range", "cachestat", "getxattr", "lgetxattr",
    "fgetxattr", "setxattr", "lsetxattr", "fsetxattr", "listxattr", "llistxattr", "flistxattr",
    "removexattr", "lremovexattr", "fremovexattr", "inotify_init", "inotify_init1",
    "inotify_add_watch", "inotify_rm_watch", "fanotify_mark", "landlock_create_ruleset",
    "landlock_add_rule", "landlock_restrict_self",
    /* chroot: Docker keeps it because CAP_SYS_CHROOT is a default capability. */
    "chroot",

    /* Reading and writing fds, pipes and zero-copy transfers. */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "_llseek", "dup", "dup2", "dup3", "fcntl", "fcntl64", "ioctl", "pipe",
    "pipe2", "sendfile", "sendfile64", "splice", "tee", "vmsplice", "copy_file_range",

    /* Waiting on fds: select, poll and epoll in all their variants. */
    "select", "_newselect", "pselect6", "pselect6_time64", "poll", "ppoll", "ppoll_time64",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait", "epoll_wait_old",
    "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",

    /* Legacy AIO (io_uring is not here: it bypasses this filter for its
     * operations and has been a steady source of kernel exploits). */
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64",

    /* Futexes and signals. */
    "futex", "futex_time64", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "sigaltstack", "sigreturn", "sigprocmask", "signalfd", "signalfd4", "kill", "tkill", "tgkill",
    "pidfd_open", "pidfd_send_signal", "pause",

    /* Reading clocks, sleeping and timers; setting clocks is left out
     * (Docker gates it on CAP_SYS_TIME, and adjtimex can set them too). */
    "clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64", "clock_nanosleep",
    "clock_nanosleep_time64", "gettimeofday", "time", "nanosleep", "alarm", "getitimer",
    "setitimer", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",

    /* System information that every libc asks for. */
    "uname", "sysinfo", "getrandom",

    /* Sockets: socket() itself is below (AF_VSOCK is refused); i386
     * multiplexes all of them through socketcall. */
    "socketpair", "bind", "connect", "listen", "accept", "accept4", "getsockname", "getpeername",
    "getsockopt", "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
    "recvmmsg", "recvmmsg_time64", "shutdown", "socketcall",

    /* System V and POSIX IPC, confined by the sandbox's IPC namespace. */
    "ipc", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "semctl", "shmget", "shmat", "shmdt", "shmctl", "mq_open", "mq_unlink",
    "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_notify", "mq_getsetattr",

    /* Tracing our own children: seccomp is re-checked after a tracer
     * changes a syscall since Linux 4.8, so it no longer bypasses the
     * filter; the kernel's ptrace access checks still apply. */
    "ptrace", "process_vm_readv", "process_vm_writev",
};
// clang-format on

/* personality() values Docker allows: PER_LINUX, PER_LINUX32, UNAME26,
 * UNAME26|PER_LINUX32, and 0xffffffff which only queries.  Anything else
 * (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ...) weakens exploit mitigations. */
static const uint64_t allowed_personalities[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

/* clone() flags that create namespaces.  CLONE_NEWTIME shares its bit with
 * the exit signal in clone(), where no valid signal sets it, so masking it
 * costs nothing and keeps the list complete. */
#define NAMESPACE_CLONE_FLAGS                                                                      \
    (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |     \
     CLONE_NEWCGROUP | CLONE_NEWTIME)

/* The prepared program.  BPF_MAXINSNS is the kernel's own limit on a
 * filter's length, so the buffer holds any program the kernel would take. */
static struct sock_filter filter_insns[BPF_MAXINSNS];
static struct sock_fprog filter_prog;
static pthread_mutex_t filter_lock = PTHREAD_MUTEX_INITIALIZER;

static void filter_releasep(scmp_filter_ctx *ctx)
{
    if (*ctx)
        seccomp_release(*ctx);
}
#define _cleanup_filter_ __attribute__((cleanup(filter_releasep)))

static int add_rules(scmp_filter_ctx ctx, sbx_error *err)
{
    int rc, nr;

    for (size_t i = 0; i < SBX_ARRAY_SIZE(allowed_syscalls); i++) {
        /* Resolved for the native architecture; names missing there come back
         * as libseccomp's pseudo numbers, for which a filter of the native
         * architecture alone gets no rule. */
        nr = seccomp_syscall_resolve_name(allowed_syscalls[i]);
        if (nr == __NR_SCMP_ERROR)
            continue;
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (rc < 0)
            return sbx__error(err, -rc, "seccomp: allow `%s`", allowed_syscalls[i]);
    }

    for (size_t i = 0; i < SBX_ARRAY_SIZE(allowed_personalities); i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(personality), 1,
                              SCMP_A0(SCMP_CMP_EQ, allowed_personalities[i]));
        if (rc < 0)
            return sbx__error(err, -rc, "seccomp: allow personality(%#llx)",
                              (unsigned long long)allowed_personalities[i]);
    }

    /* fork() and pthread_create() stay possible; new namespaces do not.  The
     * flags are arg0 on x86_64, i386 and x32 (only s390 differs). */
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                          SCMP_A0(SCMP_CMP_MASKED_EQ, NAMESPACE_CLONE_FLAGS, 0));
    if (rc < 0)
        return sbx__error(err, -rc, "seccomp: allow clone without namespace flags");

    /* clone3 passes its flags in memory, which BPF cannot read; ENOSYS makes
     * glibc fall back to clone(), whose flags the rule above checks. */
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (rc < 0)
        return sbx__error(err, -rc, "seccomp: clone3 -> ENOSYS");

    /* Every address family but vsock, which reaches the hypervisor's host;
     * Docker refuses it too.  i386's socketcall() would hide the family in
     * memory, but on x86_64 every i386 syscall kills the process anyway. */
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_NE, AF_VSOCK));
    if (rc < 0)
        return sbx__error(err, -rc, "seccomp: allow socket except AF_VSOCK");

    return 0;
}

/* Exports the compiled program through a memfd: libseccomp 2.5 only writes
 * BPF to an fd (seccomp_export_bpf_mem came in 2.6). */
static int export_program(scmp_filter_ctx ctx, sbx_error *err)
{
    _cleanup_close_ int fd = -1;
    struct stat st;
    ssize_t n;
    int rc;

    fd = memfd_create("sbx-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return sbx__error(err, errno, "seccomp: memfd_create");
    rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0)
        return sbx__error(err, -rc, "seccomp: export BPF program");
    if (fstat(fd, &st) < 0)
        return sbx__error(err, errno, "seccomp: fstat exported program");
    if (st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 ||
        (size_t)st.st_size > sizeof(filter_insns))
        return sbx__error(err, E2BIG, "seccomp: exported program of %lld bytes",
                          (long long)st.st_size);
    n = pread(fd, filter_insns, st.st_size, 0);
    if (n < 0)
        return sbx__error(err, errno, "seccomp: read exported program");
    if (n != st.st_size)
        return sbx__error(err, EIO, "seccomp: short read of exported program");

    filter_prog.filter = filter_insns;
    filter_prog.len = (unsigned short)(n / sizeof(struct sock_filter));
    return 0;
}

static int build_filter(sbx_error *err)
{
    _cleanup_filter_ scmp_filter_ctx ctx = NULL;
    int rc;

    ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx)
        return sbx__error(err, ENOMEM, "seccomp: seccomp_init");

    /* The filter covers the native architecture only; a syscall through any
     * other ABI kills the process.  On x86_64 that is i386 (int $0x80, and
     * whole 32-bit programs) and x32, whose numbers carry __X32_SYSCALL_BIT
     * under AUDIT_ARCH_X86_64: libseccomp's x86_64 program starts with a
     * check on that bit that takes the bad-architecture action whenever x32
     * is not one of the filter's architectures (test-seccomp checks both).
     *
     * This is stricter than Docker, which allows 32-bit programs, for two
     * reasons.  Start-up cost: the kernel prepares its per-syscall action
     * cache for every architecture a filter can see, and loading the three-
     * architecture filter took ~0.68 ms per sandbox against ~0.31 ms for
     * x86_64 alone, out of a 3 ms start-up budget.  Attack surface: the
     * compat syscall tables and their argument conversions are a classic
     * source of kernel exploits, which a sandbox then no longer reaches. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    /* libseccomp refuses KILL_PROCESS when it cannot see the kernel support
     * it (before 4.14, or under valgrind, which lacks seccomp(2)); killing
     * the offending thread is the next best thing. */
    if (rc == -EINVAL)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_THREAD);
    if (rc < 0)
        return sbx__error(err, -rc, "seccomp: set bad-architecture action");

    /* A binary tree instead of a linear scan of ~400 syscalls: every syscall
     * of every workload pays for this filter.  Older libseccomp lacks the
     * attribute; the linear filter is correct, just slower. */
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);

    rc = add_rules(ctx, err);
    if (rc < 0)
        return rc;
    return export_program(ctx, err);
}

int sbx__seccomp_prepare(sbx_error *err)
{
    int rc = 0;

    pthread_mutex_lock(&filter_lock);
    if (filter_prog.len == 0)
        rc = build_filter(err);
    pthread_mutex_unlock(&filter_lock);
    return rc;
}

/* ---- a compiled program cached on disk ----
 *
 * Compiling the policy with libseccomp takes some 20 ms, far more than
 * starting a sandbox; a daemon starts a fresh monitor process per sandbox.
 * The first one to compile writes the program to the run dir (root's, 0711)
 * and the next ones read it.  The file's name carries a hash of everything
 * the program is made from (the allowlist, the rules' version, libseccomp's
 * version), so a changed policy never loads a stale program; its content
 * carries a checksum; and it is only trusted when owned by us and writable
 * by nobody else. */

#define CACHE_RULES_VERSION "rules-2"   /* bump when add_rules()/build_filter() change */
#define CACHE_MAGIC         0x53425846u /* "SBXF" */

struct cache_header {
    uint32_t magic;
    uint32_t len; /* instructions */
    uint64_t checksum;
};

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static uint64_t policy_hash(void)
{
    const struct scmp_version *v = seccomp_version();
    uint64_t h = 14695981039346656037ull;

    for (size_t i = 0; i < SBX_ARRAY_SIZE(allowed_syscalls); i++)
        h = fnv1a(h, allowed_syscalls[i], strlen(allowed_syscalls[i]) + 1);
    h = fnv1a(h, allowed_personalities, sizeof(allowed_personalities));
    h = fnv1a(h, CACHE_RULES_VERSION, sizeof(CACHE_RULES_VERSION));
    if (v)
        h = fnv1a(h, v, sizeof(*v));
    return h;
}

static bool load_cached(const char *path)
{
    struct cache_header hdr;
    struct stat st;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    bool ok = false;

    if (fd < 0)
        return false;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
        !(st.st_mode & 022) && read(fd, &hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr) &&
        hdr.magic == CACHE_MAGIC && hdr.len > 0 && hdr.len <= BPF_MAXINSNS &&
        st.st_size == (off_t)(sizeof(hdr) + hdr.len * sizeof(struct sock_filter)) &&
        read(fd, filter_insns, hdr.len * sizeof(struct sock_filter)) ==
            (ssize_t)(hdr.len * sizeof(struct sock_filter)) &&
        fnv1a(14695981039346656037ull, filter_insns, hdr.len * sizeof(struct sock_filter)) ==
            hdr.checksum) {
        filter_prog.filter = filter_insns;
        filter_prog.len = (unsigned short)hdr.len;
        ok = true;
    }
    close(fd);
    return ok;
}

static void store_cached(const char *path)
{
    struct cache_header hdr = {
        .magic = CACHE_MAGIC,
        .len = filter_prog.len,
        .checksum = fnv1a(14695981039346656037ull, filter_insns,
                          filter_prog.len * sizeof(struct sock_filter)),
    };
    char tmp[PATH_MAX];
    int fd;

    snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (write(fd, &hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr) &&
        write(fd, filter_insns, hdr.len * sizeof(struct sock_filter)) ==
            (ssize_t)(hdr.len * sizeof(struct sock_filter)) &&
        fsync(fd) == 0 && rename(tmp, path) == 0) {
        close(fd);
        return;
    }
    close(fd);
    unlink(tmp);
}

int sbx__seccomp_prepare_cached(const char *cache_dir, sbx_error *err)
{
    char path[PATH_MAX];
    int rc = 0;

    pthread_mutex_lock(&filter_lock);
    if (filter_prog.len == 0) {
        snprintf(path, sizeof(path), "%s/seccomp-%016llx.bpf", cache_dir,
                 (unsigned long long)policy_hash());
        if (!load_cached(path)) {
            rc = build_filter(err);
            if (rc == 0)
                store_cached(path);
        }
    }
    pthread_mutex_unlock(&filter_lock);
    return rc;
}

/* Runs in a forked child just before execve: one syscall, no allocation. */
int sbx__seccomp_apply(void)
{
    if (filter_prog.len == 0)
        return -EINVAL;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter_prog, 0, 0) < 0)
        return -errno;
    return 0;
}
