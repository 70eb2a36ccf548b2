/* syscalls.h — what the seccomp tests (test-seccomp, run on the host) and
 * the probe (sbx-probe, run inside sandboxes) both try: the system calls the
 * sandbox's filter must refuse, and the i386 entry point.  Static data and
 * inline code only: the probe is a static program with no other sources. */
#ifndef SBX_TEST_SYSCALLS_H
#define SBX_TEST_SYSCALLS_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <time.h>

#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

#define NONEXISTENT "/nonexistent-sbx-test"

/* Numbers missing from this libc's headers are -1 and are skipped. */
#ifndef SYS_kexec_file_load
#define SYS_kexec_file_load -1
#endif
#ifndef SYS_lookup_dcookie
#define SYS_lookup_dcookie -1
#endif
#ifndef SYS_uselib
#define SYS_uselib -1
#endif
#ifndef SYS__sysctl
#define SYS__sysctl -1
#endif

#define I386_NR_getpid  20
#define I386_NR_unshare 310

/* An i386 syscall through the int $0x80 gate from 64-bit code; the kernel
 * runs it as a 32-bit syscall with i386 numbers.  Returns -errno on failure. */
static inline long int80_syscall(long nr, long arg1)
{
#if defined(__x86_64__)
    long ret;

    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(arg1)
                     : "rcx", "r8", "r9", "r10", "r11", "memory", "cc");
    return ret;
#else
    (void)nr;
    (void)arg1;
    return -ENOSYS;
#endif
}

/* Syscalls the sandbox's filter refuses, each with arguments that do no harm
 * should the filter be missing: unknown paths, bad fds, NULL buffers,
 * read-only queries.  Names are single words: the probe prints "name ERRNO". */
struct blocked_call {
    const char *name;
    long nr;
    const void *a[6];
    int expect;
};

static struct timex read_only_timex; /* modes 0: only reads the clock */
static const struct timespec zero_ts;

/* Arguments chosen so that the call fails or does nothing should the filter
 * let it through: unknown paths, bad fds, NULL buffers, read-only queries. */
static const struct blocked_call blocked_calls[] = {
    {"unshare", SYS_unshare, {(void *)CLONE_NEWUSER}, EPERM},
    {"setns", SYS_setns, {(void *)-1L, 0}, EPERM},
    {"mount", SYS_mount, {"none", NONEXISTENT, "tmpfs", 0, 0}, EPERM},
    {"umount2", SYS_umount2, {NONEXISTENT, 0}, EPERM},
    {"pivot_root", SYS_pivot_root, {NONEXISTENT, NONEXISTENT}, EPERM},
    {"move_mount", SYS_move_mount, {(void *)-1L, "", (void *)-1L, "", 0}, EPERM},
    {"open_tree", SYS_open_tree, {(void *)-1L, "", 0}, EPERM},
    {"fsopen", SYS_fsopen, {"sbx-no-such-fs", 0}, EPERM},
    {"fsconfig", SYS_fsconfig, {(void *)-1L, 0, 0, 0, 0}, EPERM},
    {"fsmount", SYS_fsmount, {(void *)-1L, 0, 0}, EPERM},
    {"fspick", SYS_fspick, {(void *)-1L, "", 0}, EPERM},
    {"mount_setattr", SYS_mount_setattr, {(void *)-1L, "", 0, 0, 0}, EPERM},
    {"keyctl", SYS_keyctl, {0 /* GET_KEYRING_ID */, (void *)-2L /* process */, 0}, EPERM},
    {"add_key", SYS_add_key, {0, 0, 0, 0, 0}, EPERM},
    {"request_key", SYS_request_key, {0, 0, 0, 0}, EPERM},
    {"bpf", SYS_bpf, {0 /* MAP_CREATE */, 0, 0}, EPERM},
    {"userfaultfd", SYS_userfaultfd, {(void *)O_CLOEXEC}, EPERM},
    {"io_uring_setup", SYS_io_uring_setup, {0, 0}, EPERM},
    {"io_uring_enter", SYS_io_uring_enter, {(void *)-1L, 0, 0, 0, 0, 0}, EPERM},
    {"io_uring_register", SYS_io_uring_register, {(void *)-1L, 0, 0, 0}, EPERM},
    {"perf_event_open", SYS_perf_event_open, {0, 0, (void *)-1L, (void *)-1L, 0}, EPERM},
    {"kexec_load", SYS_kexec_load, {0, 0, 0, (void *)0xdead0000L}, EPERM},
    {"kexec_file_load", SYS_kexec_file_load, {(void *)-1L, (void *)-1L, 0, 0, 0}, EPERM},
    {"init_module", SYS_init_module, {0, 0, ""}, EPERM},
    {"finit_module", SYS_finit_module, {(void *)-1L, "", 0}, EPERM},
    {"delete_module", SYS_delete_module, {"sbx_no_such_module", (void *)O_NONBLOCK}, EPERM},
    {"open_by_handle_at", SYS_open_by_handle_at, {(void *)-1L, 0, 0}, EPERM},
    {"name_to_handle_at", SYS_name_to_handle_at, {(void *)-1L, "", 0, 0, 0}, EPERM},
    {"clone_newns", SYS_clone, {(void *)(CLONE_NEWNS | SIGCHLD), 0, 0, 0, 0}, EPERM},
    {"clone_newuser", SYS_clone, {(void *)(CLONE_NEWUSER | SIGCHLD), 0, 0, 0, 0}, EPERM},
    {"clone3", SYS_clone3, {0, 0}, ENOSYS},
    {"acct", SYS_acct, {NONEXISTENT}, EPERM},
    {"lookup_dcookie", SYS_lookup_dcookie, {0, 0, 0}, EPERM},
    {"quotactl", SYS_quotactl, {0, 0, 0, 0}, EPERM},
    {"swapon", SYS_swapon, {NONEXISTENT, 0}, EPERM},
    {"swapoff", SYS_swapoff, {NONEXISTENT}, EPERM},
    {"reboot", SYS_reboot, {0, 0, 0, 0}, EPERM},
    {"settimeofday", SYS_settimeofday, {0, 0}, EPERM},
    {"clock_settime", SYS_clock_settime, {(void *)CLOCK_MONOTONIC, &zero_ts}, EPERM},
    {"adjtimex", SYS_adjtimex, {&read_only_timex}, EPERM},
    {"clock_adjtime", SYS_clock_adjtime, {(void *)CLOCK_REALTIME, &read_only_timex}, EPERM},
    {"syslog", SYS_syslog, {(void *)10 /* SIZE_BUFFER */, 0, 0}, EPERM},
    {"vhangup", SYS_vhangup, {0}, EPERM},
    {"iopl", SYS_iopl, {0}, EPERM},
    {"ioperm", SYS_ioperm, {0, 0, 0}, EPERM},
    {"create_module", SYS_create_module, {0, 0}, EPERM},
    {"get_kernel_syms", SYS_get_kernel_syms, {0}, EPERM},
    {"query_module", SYS_query_module, {0, 0, 0, 0, 0}, EPERM},
    {"nfsservctl", SYS_nfsservctl, {0, 0, 0}, EPERM},
    {"uselib", SYS_uselib, {0}, EPERM},
    {"ustat", SYS_ustat, {0, 0}, EPERM},
    {"sysfs", SYS_sysfs, {(void *)1, 0}, EPERM},
    {"_sysctl", SYS__sysctl, {0}, EPERM},
    {"fanotify_init", SYS_fanotify_init, {0, 0}, EPERM},
    {"sethostname", SYS_sethostname, {0, (void *)100}, EPERM},
    {"setdomainname", SYS_setdomainname, {0, (void *)100}, EPERM},
    {"kcmp", SYS_kcmp, {0, 0, 0, 0, 0}, EPERM},
    {"pidfd_getfd", SYS_pidfd_getfd, {(void *)-1L, 0, 0}, EPERM},
    {"process_madvise", SYS_process_madvise, {(void *)-1L, 0, 0, 0, 0}, EPERM},
    {"get_mempolicy", SYS_get_mempolicy, {0, 0, 0, 0, 0}, EPERM},
    {"set_mempolicy", SYS_set_mempolicy, {0, 0, 0}, EPERM},
    {"socket_vsock", SYS_socket, {(void *)AF_VSOCK, (void *)SOCK_STREAM, 0}, EPERM},
    {"personality_addr_no_randomize",
     SYS_personality,
     {(void *)0x0040000 /* ADDR_NO_RANDOMIZE */},
     EPERM},
};

#endif
