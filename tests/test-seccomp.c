/* test-seccomp.c — the seccomp filter and the capability drop, checked from
 * the inside: each test forks a child that confines itself as a sandboxed
 * workload does (capabilities, no_new_privs, filter), makes its calls and
 * reports through its exit status or a pipe; the parent asserts.  Runs as
 * root; every call uses harmless arguments in case the filter is missing. */
#include "internal.h"
#include "syscalls.h"

#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

/* ---- running code confined ---- */

/* How the child confines itself before running the test's code. */
enum confine {
    CONFINE_FULL,        /* caps drop + no_new_privs + filter, as a workload */
    CONFINE_FILTER_ONLY, /* no_new_privs + filter, full root capabilities */
    CONFINE_CAPS_ONLY,   /* caps drop only */
};

/* Exit statuses the child uses for its own failures. */
#define CHILD_CAPS_FAILED    240
#define CHILD_NNP_FAILED     241
#define CHILD_SECCOMP_FAILED 242

typedef int (*child_fn)(int out_fd, const void *arg);

/* Forks a child that confines itself and returns fn's result as its exit
 * status.  Returns that status, or 1000 + N when signal N killed it.  What
 * fn writes to out_fd is collected in out (NUL-terminated). */
static int run_confined(enum confine how, child_fn fn, const void *arg, char *out, size_t out_size)
{
    int pipefd[2], status;
    char discard[64];
    size_t used = 0;
    pid_t pid;

    ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(pipefd[0]);
        /* vhangup would hang up a controlling terminal if the filter were
         * missing; a new session has none. */
        setsid();
        if (how != CONFINE_FILTER_ONLY && sbx__caps_drop() < 0)
            _exit(CHILD_CAPS_FAILED);
        if (how != CONFINE_CAPS_ONLY) {
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                _exit(CHILD_NNP_FAILED);
            if (sbx__seccomp_apply() < 0)
                _exit(CHILD_SECCOMP_FAILED);
        }
        _exit(fn(pipefd[1], arg));
    }
    close(pipefd[1]);
    for (;;) {
        ssize_t n = out ? read(pipefd[0], out + used, out_size - 1 - used)
                        : read(pipefd[0], discard, sizeof(discard));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (out)
            used += (size_t)n;
        if (out && used == out_size - 1)
            break;
    }
    if (out)
        out[used] = '\0';
    close(pipefd[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        return 1000 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static void setup(void)
{
    sbx_error err = {0};
    int r = sbx__seccomp_prepare(&err);

    ck_assert_msg(r == 0, "sbx__seccomp_prepare: %d %s", r, err.message);
}

/* "EPERM" etc. for messages. */
static const char *ename(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "?";
}

/* A child's result for messages: 0, an errno, or 1000 + a signal. */
static const char *describe(int r)
{
    if (r == 0)
        return "succeeded";
    if (r >= 1000)
        return "killed by a signal";
    return ename(r);
}

/* ---- the refused calls ---- */

/* Exit status: 0 when the call succeeded, else its errno. */
static int child_blocked_call(int out_fd, const void *arg)
{
    const struct blocked_call *c = arg;
    long r;

    r = syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);
    if (r < 0)
        return errno;
    if (c->nr == SYS_clone && r == 0)
        _exit(0);
    return 0;
}

static void check_blocked(enum confine how, int i)
{
    const struct blocked_call *c = &blocked_calls[i];
    int r = run_confined(how, child_blocked_call, c, NULL, 0);

    ck_assert_msg(r == c->expect, "%s: got %d (%s), want %s", c->name, r, describe(r),
                  ename(c->expect));
}

/* As a workload runs: capabilities dropped, no_new_privs, filter. */
START_TEST(test_blocked_confined)
{
    check_blocked(CONFINE_FULL, _i);
}
END_TEST

/* With every root capability kept, so that only the filter can refuse. */
START_TEST(test_blocked_by_filter_alone)
{
    check_blocked(CONFINE_FILTER_ONLY, _i);
}
END_TEST

/* ---- other architectures' entry points ---- */

/* Only x86_64 runs other ABIs' syscalls: i386 through int $0x80, x32.  The
 * filter covers x86_64 alone and kills the process on either. */
#if defined(__x86_64__)

/* Exit status: 0 when i386 getpid returned our pid, 1 otherwise. */
static int child_int80_getpid(int out_fd, const void *arg)
{
    return int80_syscall(I386_NR_getpid, 0) == getpid() ? 0 : 1;
}

static int child_int80_unshare(int out_fd, const void *arg)
{
    long r = int80_syscall(I386_NR_unshare, CLONE_NEWUSER);
    return r < 0 ? (int)-r : 0;
}

/* True when the kernel runs i386 syscalls at all: without
 * CONFIG_IA32_EMULATION (or with ia32_emulation=0) the gate raises SIGSEGV.
 * Without the filter, i386 getpid must then work, so that a SIGSYS below is
 * the filter's doing. */
static bool have_i386_emulation(const char *test)
{
    int r = run_confined(CONFINE_CAPS_ONLY, child_int80_getpid, NULL, NULL, 0);

    if (r == 1000 + SIGSEGV) {
        printf("%s: skipped: no i386 emulation in this kernel\n", test);
        return false;
    }
    ck_assert_msg(r == 0, "i386 getpid without the filter: %d (%s), want our pid", r, describe(r));
    return true;
}

/* The filter covers x86_64 alone: a syscall of any other ABI kills. */
static void check_killed(enum confine how, child_fn fn, const char *what)
{
    int r = run_confined(how, fn, NULL, NULL, 0);

    ck_assert_msg(r == 1000 + SIGSYS, "%s under the filter: got %d (%s), want death by SIGSYS",
                  what, r, describe(r));
}

START_TEST(test_i386_getpid_killed)
{
    if (!have_i386_emulation("test_i386_getpid_killed"))
        return;
    check_killed(CONFINE_FULL, child_int80_getpid, "i386 getpid");
    check_killed(CONFINE_FILTER_ONLY, child_int80_getpid, "i386 getpid");
}
END_TEST

START_TEST(test_i386_unshare_killed)
{
    if (!have_i386_emulation("test_i386_unshare_killed"))
        return;
    check_killed(CONFINE_FULL, child_int80_unshare, "i386 unshare");
    check_killed(CONFINE_FILTER_ONLY, child_int80_unshare, "i386 unshare");
}
END_TEST

static int child_x32_unshare(int out_fd, const void *arg)
{
    long r = syscall(__X32_SYSCALL_BIT | SYS_unshare, CLONE_NEWUSER);
    return r < 0 ? errno : 0;
}

/* x32 shares AUDIT_ARCH_X86_64 with native syscalls; only the number's
 * __X32_SYSCALL_BIT tells them apart, and libseccomp's check on that bit
 * must kill.  The filter runs before the kernel looks up the number, so
 * this holds whether or not the kernel has CONFIG_X86_X32_ABI. */
START_TEST(test_x32_unshare_killed)
{
    check_killed(CONFINE_FULL, child_x32_unshare, "x32 unshare");
    check_killed(CONFINE_FILTER_ONLY, child_x32_unshare, "x32 unshare");
}
END_TEST
#endif

/* ---- what must keep working ---- */

static int child_fork(int out_fd, const void *arg)
{
    int status;
    pid_t pid = fork();

    if (pid < 0)
        return 100 + errno;
    if (pid == 0)
        _exit(7);
    if (waitpid(pid, &status, 0) != pid)
        return 99;
    return WIFEXITED(status) && WEXITSTATUS(status) == 7 ? 0 : 98;
}

START_TEST(test_fork_works)
{
    int r = run_confined(CONFINE_FULL, child_fork, NULL, NULL, 0);
    ck_assert_msg(r == 0, "fork under the filter: %d", r);
}
END_TEST

static void *thread_main(void *arg)
{
    return arg;
}

/* glibc tries clone3 first and must fall back to clone on ENOSYS. */
static int child_thread(int out_fd, const void *arg)
{
    pthread_t t;
    void *ret = NULL;
    int r = pthread_create(&t, NULL, thread_main, (void *)0x5b);

    if (r != 0)
        return r;
    if (pthread_join(t, &ret) != 0)
        return 99;
    return ret == (void *)0x5b ? 0 : 98;
}

START_TEST(test_threads_work)
{
    int r = run_confined(CONFINE_FULL, child_thread, NULL, NULL, 0);
    ck_assert_msg(r == 0, "pthread_create under the filter: %d (%s)", r, r < 98 ? ename(r) : "?");
}
END_TEST

static int child_exec_true(int out_fd, const void *arg)
{
    execl("/bin/true", "true", (char *)NULL);
    return 100 + errno;
}

START_TEST(test_exec_works)
{
    int r = run_confined(CONFINE_FULL, child_exec_true, NULL, NULL, 0);
    ck_assert_msg(r == 0, "/bin/true under the filter exited %d", r);
}
END_TEST

/* Writes one line per call: "<name> <ret> <errno>". */
static int child_allowed_calls(int out_fd, const void *arg)
{
    char buf[16] = "sbx", copy[16] = "";
    struct iovec local = {copy, sizeof(copy)}, remote = {buf, sizeof(buf)};
    unsigned long msg;
    long r;

#define REPORT(name, call)                                                                         \
    do {                                                                                           \
        errno = 0;                                                                                 \
        r = (call);                                                                                \
        dprintf(out_fd, "%s %ld %d\n", name, r, r < 0 ? errno : 0);                                \
    } while (0)

    REPORT("getuid", (long)getuid());
    REPORT("getgid", (long)getgid());
    REPORT("getpid", (long)getpid() > 0 ? 0L : -1L);
    REPORT("personality_query", (long)personality(0xffffffff));
    REPORT("personality_linux", (long)personality(PER_LINUX));
    REPORT("chroot", (long)chroot(NONEXISTENT));
    /* We trace nobody: ESRCH from the kernel, not EPERM from the filter. */
    REPORT("ptrace", syscall(SYS_ptrace, PTRACE_GETEVENTMSG, getppid(), 0, &msg));
    REPORT("process_vm_readv", (long)process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
    REPORT("socket_unix", (long)socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    /* The clone's child must leave before reporting: its "0" line would race
     * the parent's. */
    errno = 0;
    r = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (r == 0)
        _exit(0);
    dprintf(out_fd, "%s %ld %d\n", "clone_plain", r, r < 0 ? errno : 0);
    if (r > 0)
        waitpid((pid_t)r, NULL, 0);
#undef REPORT
    return 0;
}

/* Finds "<name> <ret> <errno>" in out. */
static void allowed_result(const char *out, const char *name, long *ret, int *err)
{
    char key[64];
    size_t len = strlen(name);

    snprintf(key, sizeof(key), "%s ", name);
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, key, len + 1) == 0) {
            ck_assert_msg(sscanf(p + len + 1, "%ld %d", ret, err) == 2, "bad line for %s", name);
            return;
        }
    }
    ck_abort_msg("no result for %s in: %s", name, out);
}

START_TEST(test_allowed_calls_work)
{
    char out[1024];
    long ret;
    int e;

    int r = run_confined(CONFINE_FULL, child_allowed_calls, NULL, out, sizeof(out));
    ck_assert_msg(r == 0, "child failed: %d", r);

    allowed_result(out, "getuid", &ret, &e);
    ck_assert_msg(ret == 0, "getuid: %ld", ret);
    allowed_result(out, "getgid", &ret, &e);
    ck_assert_msg(ret == 0, "getgid: %ld", ret);
    allowed_result(out, "getpid", &ret, &e);
    ck_assert_msg(ret == 0, "getpid failed");
    allowed_result(out, "personality_query", &ret, &e);
    ck_assert_msg(ret >= 0, "personality(0xffffffff): %s", ename(e));
    allowed_result(out, "personality_linux", &ret, &e);
    ck_assert_msg(ret >= 0, "personality(PER_LINUX): %s", ename(e));
    allowed_result(out, "chroot", &ret, &e);
    ck_assert_msg(ret == -1 && e == ENOENT, "chroot(nonexistent): %ld %s, want ENOENT", ret,
                  ename(e));
    allowed_result(out, "ptrace", &ret, &e);
    ck_assert_msg(ret == -1 && e == ESRCH, "ptrace(GETEVENTMSG, parent): %ld %s, want ESRCH", ret,
                  ename(e));
    allowed_result(out, "process_vm_readv", &ret, &e);
    ck_assert_msg(ret == 16, "process_vm_readv(self): %ld %s", ret, ename(e));
    allowed_result(out, "socket_unix", &ret, &e);
    ck_assert_msg(ret >= 0, "socket(AF_UNIX): %s", ename(e));
    allowed_result(out, "clone_plain", &ret, &e);
    ck_assert_msg(ret > 0, "clone(SIGCHLD): %s", ename(e));
}
END_TEST

/* ---- capabilities ---- */

static int child_status(int out_fd, const void *arg)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return 100 + errno;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        if (write(out_fd, buf, (size_t)n) != n)
            return 99;
    close(fd);
    return n < 0 ? 98 : 0;
}

static uint64_t status_hex(const char *status, const char *key)
{
    char k[32];
    const char *p;
    unsigned long long v;

    snprintf(k, sizeof(k), "\n%s:", key);
    p = strstr(status, k);
    ck_assert_msg(p != NULL, "no %s in /proc/self/status", key);
    ck_assert_msg(sscanf(p + strlen(k), " %llx", &v) == 1, "bad %s line", key);
    return v;
}

static uint64_t default_mask(void)
{
    uint64_t mask = 0;

    for (size_t i = 0; i < sbx__n_default_caps; i++)
        mask |= UINT64_C(1) << sbx__default_caps[i];
    return mask;
}

START_TEST(test_caps_drop)
{
    char status[8192];
    uint64_t want = default_mask();

    ck_assert_uint_eq(sbx__n_default_caps, 14);
    ck_assert_uint_eq(want, 0xa80425fb); /* Docker's default set, as `capsh --decode` shows it */

    int r = run_confined(CONFINE_FULL, child_status, NULL, status, sizeof(status));
    ck_assert_msg(r == 0, "child failed: %d", r);
    ck_assert_msg(status_hex(status, "CapBnd") == want, "CapBnd %#llx, want %#llx",
                  (unsigned long long)status_hex(status, "CapBnd"), (unsigned long long)want);
    ck_assert_msg(status_hex(status, "CapPrm") == want, "CapPrm %#llx, want %#llx",
                  (unsigned long long)status_hex(status, "CapPrm"), (unsigned long long)want);
    ck_assert_msg(status_hex(status, "CapEff") == want, "CapEff %#llx, want %#llx",
                  (unsigned long long)status_hex(status, "CapEff"), (unsigned long long)want);
    ck_assert_msg(status_hex(status, "CapInh") == 0, "CapInh %#llx, want 0",
                  (unsigned long long)status_hex(status, "CapInh"));
    ck_assert_msg(status_hex(status, "CapAmb") == 0, "CapAmb %#llx, want 0",
                  (unsigned long long)status_hex(status, "CapAmb"));
    ck_assert_msg(strstr(status, "\nNoNewPrivs:\t1\n"), "no_new_privs not set");
    ck_assert_msg(strstr(status, "\nSeccomp:\t2\n"), "not in seccomp filter mode");
}
END_TEST

static int child_caps_twice(int out_fd, const void *arg)
{
    /* The second call runs without CAP_SETPCAP's bounding-set work to do. */
    int r = sbx__caps_drop();
    return r < 0 ? -r : 0;
}

START_TEST(test_caps_drop_idempotent)
{
    int r = run_confined(CONFINE_CAPS_ONLY, child_caps_twice, NULL, NULL, 0);
    ck_assert_msg(r == 0, "second sbx__caps_drop: %d (%s)", r, ename(r));
}
END_TEST

/* ---- preparing and applying ---- */

START_TEST(test_prepare_idempotent)
{
    sbx_error err = {0};

    /* setup() prepared once already; more calls reuse the program. */
    ck_assert_int_eq(sbx__seccomp_prepare(&err), 0);
    ck_assert_int_eq(sbx__seccomp_prepare(&err), 0);
    int r = run_confined(CONFINE_FULL, child_blocked_call, &blocked_calls[0], NULL, 0);
    ck_assert_msg(r == EPERM, "unshare after repeated prepare: %d", r);
}
END_TEST

static int child_apply_without_nnp(int out_fd, const void *arg)
{
    int r = sbx__seccomp_apply();
    return r < 0 ? -r : 0;
}

/* Without no_new_privs and CAP_SYS_ADMIN the kernel refuses a filter: the
 * caller must not assume apply succeeded. */
START_TEST(test_apply_needs_nnp)
{
    int r = run_confined(CONFINE_CAPS_ONLY, child_apply_without_nnp, NULL, NULL, 0);
    ck_assert_msg(r == EACCES, "apply without no_new_privs: %d, want EACCES", r);
}
END_TEST

static Suite *seccomp_suite(void)
{
    Suite *s = suite_create("seccomp");
    TCase *tc;
    int n_blocked = (int)SBX_ARRAY_SIZE(blocked_calls);

    tc = tcase_create("blocked");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_loop_test(tc, test_blocked_confined, 0, n_blocked);
    tcase_add_loop_test(tc, test_blocked_by_filter_alone, 0, n_blocked);
    suite_add_tcase(s, tc);

#if defined(__x86_64__)
    tc = tcase_create("abi");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_i386_getpid_killed);
    tcase_add_test(tc, test_i386_unshare_killed);
    tcase_add_test(tc, test_x32_unshare_killed);
    suite_add_tcase(s, tc);
#endif

    tc = tcase_create("allowed");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_fork_works);
    tcase_add_test(tc, test_threads_work);
    tcase_add_test(tc, test_exec_works);
    tcase_add_test(tc, test_allowed_calls_work);
    suite_add_tcase(s, tc);

    tc = tcase_create("caps");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_caps_drop);
    tcase_add_test(tc, test_caps_drop_idempotent);
    suite_add_tcase(s, tc);

    tc = tcase_create("prepare");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_prepare_idempotent);
    tcase_add_test(tc, test_apply_needs_nnp);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (geteuid() != 0) {
        printf("test-seccomp: skipped: needs root (capability and filter checks)\n");
        return 77;
    }
    sr = srunner_create(seccomp_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
