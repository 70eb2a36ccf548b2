/* test-runtime.c — the runtime library against the real kernel: isolation,
 * limits, seccomp, capabilities, masked paths, fd hygiene, init, exec, and
 * cleanup.  Runs as root; every sandbox is real. */
#include "testlib.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Docker's default capabilities as a mask (CapEff of a default container). */
#define DOCKER_CAPS 0xa80425fbULL

static struct sbx_test_ctx ctx;

static void setup(void)
{
    sbx_test_setup(&ctx);
}

static void teardown(void)
{
    sbx_test_teardown(&ctx);
}

static sbx_sandbox *start_idle(struct sbx_config *cfg)
{
    sbx_sandbox *sb = NULL;
    sbx_error err = {0};

    ck_assert_msg(sbx_sandbox_create(cfg, &sb, &err) == 0, "create: %s", err.message);
    return sb;
}

static void destroy(sbx_sandbox *sb)
{
    sbx_error err = {0};
    ck_assert_msg(sbx_sandbox_destroy(sb, &err) == 0, "destroy: %s", err.message);
}

#define RUN(...)          sbx_test_run(&ctx, NULL, (const char *const[]){__VA_ARGS__, NULL}, &ex)
#define RUN_CFG(cfg, ...) sbx_test_run(&ctx, cfg, (const char *const[]){__VA_ARGS__, NULL}, &ex)

/* ---- cgroup v2: processes born in their cgroup ---- */

/* The cgroup2 path of a process ("0::PATH" in /proc/PID/cgroup), or "". */
static void v2_path_of(pid_t pid, char *buf, size_t size)
{
    char path[64], *all, *line;

    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    all = sbx_test_slurp(path);
    ck_assert_ptr_nonnull(all);
    line = strstr(all, "0::");
    ck_assert_ptr_nonnull(line);
    line += 3;
    line[strcspn(line, "\n")] = '\0';
    snprintf(buf, size, "%s", line);
    free(all);
}

START_TEST(test_cgroup_v2_sandbox)
{
    static const char root[] = "/sys/fs/cgroup/unified";
    struct sbx_exec_config ecfg = {.argv = (const char *const[]){"sleep", "30", NULL},
                                   .stdio = {-1, -1, -1}};
    struct sbx_config cfg = sbx_test_config(&ctx);
    char want[256], got[PATH_MAX], dir[PATH_MAX], *out;
    struct sbx_process p;
    sbx_error err = {0};
    struct statfs sfs;
    sbx_sandbox *sb;
    int rc;

    /* On a hybrid host the controller-less cgroup2 mount still takes
     * CLONE_INTO_CGROUP; on a v2 host every other test runs this path. */
    if (statfs(root, &sfs) < 0 || sfs.f_type != CGROUP2_SUPER_MAGIC) {
        printf("test_cgroup_v2_sandbox: skipped: no cgroup2 mount at %s (the default backend is "
               "%s)\n",
               root, sbx_cgroup_mode());
        return;
    }
    sbx__cgroup_v2_set_root(root);
    sbx__cgroup_force_ops(&sbx__cgroup_v2_ops);
    sb = start_idle(&cfg);
    /* init was born in <own>/<parent>/<id>, and sees it as its root. */
    snprintf(want, sizeof(want), "/%s/%s", cfg.cgroup_parent, cfg.id);
    v2_path_of(sbx_sandbox_pid(sb), got, sizeof(got));
    ck_assert_msg(strlen(got) >= strlen(want) && !strcmp(got + strlen(got) - strlen(want), want),
                  "init is in `%s`", got);
    snprintf(dir, sizeof(dir), "%s%s", root, got);
    out =
        sbx_test_exec(sb, (const char *const[]){"cat", "/proc/self/cgroup", NULL}, NULL, NULL, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(strstr(out, "0::/\n"), "an exec'd process sees `%s`", out);
    free(out);
    /* An exec'd process (init's child) is there too. */
    ck_assert_msg(sbx_sandbox_exec(sb, &ecfg, &p, &err) == 0, "exec: %s", err.message);
    {
        char exec_path[PATH_MAX];

        v2_path_of(p.pid, exec_path, sizeof(exec_path));
        ck_assert_str_eq(exec_path, got);
    }
    ck_assert_int_eq(syscall(SYS_pidfd_send_signal, p.pidfd, SIGKILL, NULL, 0), 0);
    ck_assert_int_eq(sbx_process_wait(&p, -1, &rc, &err), 1);
    ck_assert_int_eq(rc, 137);
    destroy(sb);
    ck_assert_msg(access(dir, F_OK) < 0 && errno == ENOENT, "`%s` is left", dir);
    sbx__cgroup_force_ops(NULL);
    sbx__cgroup_v2_set_root(NULL);
}
END_TEST

/* ---- pre-made network namespaces ---- */

/* "net:[INODE]" of a namespace fd, as readlink shows it inside. */
static void ns_name(int fd, char *buf, size_t size)
{
    struct stat st;

    ck_assert_int_eq(fstat(fd, &st), 0);
    snprintf(buf, size, "net:[%lu]", (unsigned long)st.st_ino);
}

START_TEST(test_netpool_sandboxes)
{
    struct sbx_netns ns[2] = {{-1, -1, -1, 0}, {-1, -1, -1, 0}};
    char names[2][64], *out[2];
    sbx_netpool *pool = NULL;
    sbx_error err = {0};
    struct sbx_exit ex;
    int r;

    ck_assert_msg(sbx_netpool_start(2, NULL, &pool, &err) == 0, "netpool: %s", err.message);
    for (int i = 0; i < 2; i++) {
        struct sbx_config cfg = sbx_test_config(&ctx);

        /* The helper makes them in the background: wait for each. */
        for (int tries = 0;
             (r = sbx_netpool_take(sbx_netpool_fd(pool), &ns[i], &err)) == -EAGAIN && tries < 5000;
             tries++)
            usleep(1000);
        ck_assert_msg(r == 0, "take: %d %s", r, err.message);
        ns_name(ns[i].net_fd, names[i], sizeof(names[i]));
        cfg.netns = &ns[i];
        out[i] = RUN_CFG(&cfg, "sh", "-c", PROBE " net; echo ifaces $(ls /sys/class/net)");
        ck_assert_int_eq(ex.returncode, 0);
        sbx_netns_close(&ns[i]);
        ck_assert_int_eq(ns[i].net_fd, -1);
    }
    for (int i = 0; i < 2; i++) {
        /* Each sandbox is in the namespace it was given, and its /sys is
         * that namespace's: loopback only, up. */
        ck_assert_str_eq(sbx_test_value(out[i], "netns"), names[i]);
        ck_assert_str_eq(sbx_test_value(out[i], "ifaces"), "lo");
        ck_assert_str_eq(sbx_test_value(out[i], "lo_up"), "1");
        /* What the two sysctls give, and what the host-owned namespace
         * withholds: no raw sockets, no reconfiguring. */
        ck_assert_str_eq(sbx_test_value(out[i], "bind80"), "OK");
        ck_assert_str_eq(sbx_test_value(out[i], "ping_socket"), "OK");
        ck_assert_str_eq(sbx_test_value(out[i], "raw_socket"), "EPERM");
        ck_assert_str_eq(sbx_test_value(out[i], "lo_down"), "EPERM");
    }
    ck_assert_str_ne(names[0], names[1]);
    free(out[0]);
    free(out[1]);
    sbx_netpool_stop(pool);
}
END_TEST

START_TEST(test_netpool_exec_joins_the_namespace)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    struct sbx_netns ns = {-1, -1, -1, 0};
    sbx_netpool *pool = NULL;
    sbx_error err = {0};
    char name[64], host[64] = "", *out;
    sbx_sandbox *sb;
    int rc, r;

    ck_assert_msg(sbx_netpool_start(1, NULL, &pool, &err) == 0, "netpool: %s", err.message);
    for (int tries = 0;
         (r = sbx_netpool_take(sbx_netpool_fd(pool), &ns, &err)) == -EAGAIN && tries < 5000;
         tries++)
        usleep(1000);
    ck_assert_msg(r == 0, "take: %d %s", r, err.message);
    ns_name(ns.net_fd, name, sizeof(name));
    cfg.netns = &ns;
    sb = start_idle(&cfg);
    sbx_netns_close(&ns);
    /* The caller is back in its own namespace. */
    ck_assert_int_gt(readlink("/proc/self/ns/net", host, sizeof(host) - 1), 0);
    ck_assert_str_ne(host, name);
    out = sbx_test_exec(sb, (const char *const[]){PROBE, "net", NULL}, NULL, NULL, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(sbx_test_value(out, "netns"), name);
    free(out);
    destroy(sb);
    sbx_netpool_stop(pool);
}
END_TEST

START_TEST(test_own_netns_keeps_raw_sockets)
{
    struct sbx_exit ex;
    /* Without a pool the sandbox owns its namespace: Docker's NET_RAW. */
    char *out = RUN(PROBE, "net");

    ck_assert_str_eq(sbx_test_value(out, "raw_socket"), "OK");
    ck_assert_str_eq(sbx_test_value(out, "bind80"), "OK");
    ck_assert_str_eq(sbx_test_value(out, "lo_up"), "1");
    free(out);
}
END_TEST

START_TEST(test_netpool_stopped)
{
    struct sbx_netns ns = {-1, -1, -1, 0};
    sbx_netpool *pool = NULL;
    sbx_error err = {0};
    int fds[2];

    /* A pool whose helper is gone says so, instead of "empty". */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    close(fds[1]);
    ck_assert_int_eq(sbx_netpool_take(fds[0], &ns, &err), -EPIPE);
    close(fds[0]);
    ck_assert_int_eq(sbx_netpool_start(0, NULL, &pool, &err), -EINVAL);
    ck_assert_int_eq(sbx_netpool_start(SBX_NETPOOL_MAX + 1, NULL, &pool, &err), -EINVAL);
}
END_TEST

/* ---- isolation ---- */

START_TEST(test_hello_exit_code)
{
    struct sbx_exit ex;
    char *out = RUN("sh", "-c", "echo hello; exit 3");

    ck_assert_str_eq(out, "hello\n");
    ck_assert_int_eq(ex.reason, SBX_FINISH_EXITED);
    ck_assert_int_eq(ex.returncode, 3);
    free(out);
}
END_TEST

START_TEST(test_pid_namespace)
{
    struct sbx_exit ex;
    /* init is pid 1, the entrypoint pid 2, and no host process is visible. */
    char *out = RUN("sh", "-c",
                    "echo self $$; echo init $(cat /proc/1/comm); "
                    "echo procs $(ls -d /proc/[0-9]* | wc -l)");

    ck_assert_str_eq(sbx_test_value(out, "self"), "2");
    ck_assert_str_eq(sbx_test_value(out, "init"), "init");
    /* init, sh, the $(...) subshell, ls and wc: nothing of the host's. */
    ck_assert_int_le(atoi(sbx_test_value(out, "procs")), 6);
    free(out);
}
END_TEST

START_TEST(test_hostname)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    struct sbx_exit ex;
    char host_before[256], host_after[256], *out;

    gethostname(host_before, sizeof(host_before));
    cfg.hostname = "sbx-test-host";
    out = RUN_CFG(&cfg, "sh", "-c", "hostname sbx-renamed 2>/dev/null; echo name $(hostname)");
    gethostname(host_after, sizeof(host_after));
    ck_assert_ptr_nonnull(sbx_test_value(out, "name"));
    ck_assert_str_eq(host_before, host_after);
    free(out);

    cfg = sbx_test_config(&ctx);
    cfg.hostname = "sbx-test-host";
    out = RUN_CFG(&cfg, "hostname");
    ck_assert_str_eq(out, "sbx-test-host\n");
    free(out);
}
END_TEST

START_TEST(test_root_is_not_root_outside)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    sbx_sandbox *sb = start_idle(&cfg);
    char path[PATH_MAX], *status;
    struct stat st;
    int rc;
    char *out = sbx_test_exec(
        sb,
        (const char *const[]){"sh", "-c", "id -u; touch /root/made-inside; cat /proc/self/uid_map",
                              NULL},
        NULL, NULL, &rc);

    ck_assert_int_eq(rc, 0);
    ck_assert_msg(!strncmp(out, "0\n", 2), "uid inside: %s", out);
    /* The file the sandbox's root made is owned by an unprivileged host uid. */
    snprintf(path, sizeof(path), "%s/root/made-inside", sbx_sandbox_upper_dir(sb));
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_ge(st.st_uid, 100000);
    ck_assert_uint_ne(st.st_uid, 0);
    /* No other host user can reach into the writable layer. */
    snprintf(path, sizeof(path), "%s/..", sbx_sandbox_upper_dir(sb));
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0700);
    /* So is its init, seen from the host. */
    snprintf(path, sizeof(path), "/proc/%d/status", sbx_sandbox_pid(sb));
    status = sbx_test_slurp(path);
    ck_assert_ptr_nonnull(status);
    ck_assert_msg(strstr(status, "\nUid:\t0\t") == NULL, "init runs as host root:\n%s", status);
    free(status);
    free(out);
    destroy(sb);
}
END_TEST

/* A state dir made ahead (sbx_state_spare_make) is taken by the create that
 * names it, and ends up exactly like one made on the way: the sandbox's
 * owner and modes, what the sandbox writes lands in it.  A spare that is
 * not there is no error; clearing removes the rest. */
START_TEST(test_state_spare)
{
    struct sbx_config cfg = sbx_test_config(&ctx), cfg2 = sbx_test_config(&ctx);
    char spare[PATH_MAX], path[PATH_MAX];
    sbx_error err = {0};
    sbx_sandbox *sb, *sb2;
    struct stat st, st2;
    int rc;
    char *out;

    ck_assert_int_eq(sbx_state_spare_make(ctx.state_dir, "a1", &err), 0);
    ck_assert_int_eq(sbx_state_spare_make(ctx.state_dir, "b2", &err), 0);
    ck_assert_int_eq(sbx_state_spare_make(ctx.state_dir, "../x", &err), -EINVAL);
    snprintf(spare, sizeof(spare), "%s/sandboxes/.spare-a1", ctx.state_dir);
    ck_assert_int_eq(stat(spare, &st), 0);
    cfg.state_spare = "a1";
    sb = start_idle(&cfg);
    ck_assert_int_eq(stat(spare, &st), -1); /* taken */
    out = sbx_test_exec(sb, (const char *const[]){"sh", "-c", "echo x > /root/f", NULL}, NULL, NULL,
                        &rc);
    ck_assert_int_eq(rc, 0);
    free(out);
    snprintf(path, sizeof(path), "%s/root/f", sbx_sandbox_upper_dir(sb));
    ck_assert_int_eq(stat(path, &st), 0);
    /* Owned and protected as without a spare. */
    cfg2.state_spare = "gone";
    sb2 = start_idle(&cfg2);
    ck_assert_int_eq(stat(sbx_sandbox_upper_dir(sb), &st), 0);
    ck_assert_int_eq(stat(sbx_sandbox_upper_dir(sb2), &st2), 0);
    ck_assert_uint_ne(st.st_uid, 0);
    ck_assert_uint_eq(st.st_mode & 07777, st2.st_mode & 07777);
    snprintf(path, sizeof(path), "%s/..", sbx_sandbox_upper_dir(sb));
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0700);
    snprintf(path, sizeof(path), "%s/../work", sbx_sandbox_upper_dir(sb));
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0700);
    ck_assert_uint_ne(st.st_uid, 0);
    destroy(sb);
    destroy(sb2);
    sbx_state_spares_clear(ctx.state_dir);
    snprintf(spare, sizeof(spare), "%s/sandboxes/.spare-b2", ctx.state_dir);
    ck_assert_int_eq(stat(spare, &st), -1);
}
END_TEST

START_TEST(test_distinct_uid_ranges)
{
    struct sbx_config c1 = sbx_test_config(&ctx), c2 = sbx_test_config(&ctx);
    sbx_sandbox *a = start_idle(&c1), *b = start_idle(&c2);
    char pa[64], pb[64], *ma, *mb;

    snprintf(pa, sizeof(pa), "/proc/%d/uid_map", sbx_sandbox_pid(a));
    snprintf(pb, sizeof(pb), "/proc/%d/uid_map", sbx_sandbox_pid(b));
    ma = sbx_test_slurp(pa);
    mb = sbx_test_slurp(pb);
    ck_assert_ptr_nonnull(ma);
    ck_assert_ptr_nonnull(mb);
    ck_assert_str_ne(ma, mb);
    free(ma);
    free(mb);
    destroy(a);
    destroy(b);
}
END_TEST

START_TEST(test_no_userns_is_real_root)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    struct sbx_exit ex;
    char *out;

    cfg.no_userns = true;
    out = RUN_CFG(&cfg, "cat", "/proc/self/uid_map");
    ck_assert_msg(strstr(out, "4294967295") != NULL, "uid_map: %s", out);
    free(out);
}
END_TEST

/* Mounts made inside never show on the host, and a mount the host makes
 * later under a shared mount never shows inside. */
START_TEST(test_mount_propagation)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    char shared[] = "/tmp/sbx-prop.XXXXXX", sub[PATH_MAX], path[64];
    char *before, *after, *inside;
    sbx_sandbox *sb;

    ck_assert_ptr_nonnull(mkdtemp(shared));
    ck_assert_int_eq(mount("tmpfs", shared, "tmpfs", 0, "size=64k"), 0);
    ck_assert_int_eq(mount(NULL, shared, NULL, MS_SHARED, NULL), 0);
    snprintf(sub, sizeof(sub), "%s/late", shared);
    ck_assert_int_eq(mkdir(sub, 0755), 0);

    before = sbx_test_slurp("/proc/self/mountinfo");
    cfg.no_userns = true; /* the strongest case: a copy of the host's own table */
    sb = start_idle(&cfg);
    after = sbx_test_slurp("/proc/self/mountinfo");
    ck_assert_str_eq(before, after);

    ck_assert_int_eq(mount("tmpfs", sub, "tmpfs", 0, "size=64k"), 0);
    snprintf(path, sizeof(path), "/proc/%d/mountinfo", sbx_sandbox_pid(sb));
    inside = sbx_test_slurp(path);
    ck_assert_ptr_nonnull(inside);
    ck_assert_msg(strstr(inside, "/late") == NULL, "host mount leaked in:\n%s", inside);
    /* The old root is gone: no host filesystem is mounted inside. */
    ck_assert_msg(strstr(inside, " - ext4 ") == NULL, "host root visible:\n%s", inside);
    umount2(sub, MNT_DETACH);
    umount2(shared, MNT_DETACH);
    rmdir(shared);
    free(before);
    free(after);
    free(inside);
    destroy(sb);
}
END_TEST

/* ---- binds: volumes and host paths ---- */

/* A host tree for the binds: hello (root's), sub/, a file, and two
 * symlinks that lead out of it.  Returns its path in buf. */
static void make_host_tree(char *buf, size_t size)
{
    char p[PATH_MAX + 32];
    FILE *f;

    snprintf(buf, size, "%s/host-tree", ctx.state_dir);
    ck_assert_int_eq(mkdir(buf, 0755), 0);
    snprintf(p, sizeof(p), "%s/hello", buf);
    f = fopen(p, "we");
    fputs("hi from the host\n", f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/sub", buf);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/file.txt", buf);
    f = fopen(p, "we");
    fputs("one file\n", f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/out", buf);
    ck_assert_int_eq(symlink("/etc", p), 0);
    snprintf(p, sizeof(p), "%s/up", buf);
    ck_assert_int_eq(symlink("..", p), 0);
    snprintf(p, sizeof(p), "%s/inside", buf);
    ck_assert_int_eq(symlink("sub", p), 0);
}

/* Binds: read-write (what the sandbox's root writes is host root's on
 * disk, idmapped), read-only (EROFS, and no remount), a single file,
 * nested destinations made on the way, nosuid and nodev; a source that
 * leads out of its root, or a destination through a symlink, fails the
 * create. */
START_TEST(test_mounts)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    char tree[PATH_MAX], path[PATH_MAX + 32], *out;
    struct sbx_mount m[4];
    struct sbx_exit ex;
    sbx_sandbox *sb = NULL;
    sbx_error err = {0};
    struct stat st;

    make_host_tree(tree, sizeof(tree));
    m[0] = (struct sbx_mount){.root = tree, .dst = "/data"};
    m[1] = (struct sbx_mount){.root = tree, .path = "inside", .dst = "/mnt/a/b", .readonly = true};
    m[2] = (struct sbx_mount){
        .root = tree, .path = "file.txt", .dst = "/etc/extra.txt", .readonly = true};
    /* (given before its parent: placed after it) */
    m[3] = (struct sbx_mount){.root = tree, .path = "sub", .dst = "/data/nested", .readonly = true};
    cfg.mounts = m;
    cfg.n_mounts = 4;
    out = RUN_CFG(&cfg, "sh", "-c",
                  "cat /data/hello; stat -c 'owner %u' /data/hello; echo new > /data/made; "
                  "cat /etc/extra.txt; touch /mnt/a/b/x 2>/dev/null || echo ro-refused; "
                  "mount -o remount,rw /mnt/a/b 2>/dev/null || echo remount-refused; "
                  "touch /data/nested/y 2>/dev/null || echo nested-ro; "
                  "grep ' /data ' /proc/self/mountinfo | grep nosuid | grep -q nodev "
                  "&& echo nosuid-nodev");
    ck_assert_msg(ex.returncode == 0, "%d: %s", ex.returncode, out);
    ck_assert_str_eq(out, "hi from the host\nowner 0\none file\nro-refused\nremount-refused\n"
                          "nested-ro\nnosuid-nodev\n");
    free(out);
    /* Written by the sandbox's root: host root's on disk, not its range's. */
    snprintf(path, sizeof(path), "%s/made", tree);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_uid, 0);
    /* The mount point made inside the tree for the nested bind. */
    snprintf(path, sizeof(path), "%s/nested", tree);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));

    /* Sources that lead out of their root. */
    cfg = sbx_test_config(&ctx);
    m[0] = (struct sbx_mount){.root = tree, .path = "out", .dst = "/x"};
    cfg.mounts = m;
    cfg.n_mounts = 1;
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -EPERM);
    ck_assert_msg(strstr(err.message, "leads out"), "%s", err.message);
    m[0].path = "up/etc";
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -EPERM);
    m[0].path = "../etc";
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -EINVAL);
    /* A destination through a symlink (here one in the bound tree). */
    m[0] = (struct sbx_mount){.root = tree, .dst = "/data"};
    m[1] = (struct sbx_mount){.root = tree, .path = "sub", .dst = "/data/out/x"};
    cfg.n_mounts = 2;
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -ELOOP);
    ck_assert_msg(strstr(err.message, "crosses a symlink"), "%s", err.message);
    /* Destinations the runtime refuses outright. */
    m[1].dst = "/proc/x";
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -EINVAL);
    m[1].dst = "/";
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -EINVAL);
    m[1].dst = "/data/../etc";
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -EINVAL);
    m[1].dst = "/data";
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -EINVAL);
    ck_assert_ptr_null(sb);
}
END_TEST

/* Without a user namespace (real root inside) the binds are plain, still
 * nosuid, nodev and read-only when asked. */
START_TEST(test_mounts_no_userns)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    char tree[PATH_MAX], *out;
    struct sbx_mount m[1];
    struct sbx_exit ex;

    make_host_tree(tree, sizeof(tree));
    m[0] = (struct sbx_mount){.root = tree, .dst = "/data", .readonly = true};
    cfg.mounts = m;
    cfg.n_mounts = 1;
    cfg.no_userns = true;
    out =
        RUN_CFG(&cfg, "sh", "-c", "cat /data/hello; touch /data/x 2>/dev/null || echo ro-refused");
    ck_assert_int_eq(ex.returncode, 0);
    ck_assert_str_eq(out, "hi from the host\nro-refused\n");
    free(out);
}
END_TEST

/* disk_mib: the writable layer in a file system of that size; writing
 * past it fails inside with ENOSPC, nothing of it outlives the sandbox. */
START_TEST(test_disk_limit)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    char *out, *mounts;
    sbx_sandbox *sb;
    int rc;

    cfg.disk_mib = 16;
    sb = start_idle(&cfg);
    out = sbx_test_exec(sb,
                        (const char *const[]){"sh", "-c",
                                              "dd if=/dev/zero of=/big bs=1M count=32 2>&1 | "
                                              "grep -o 'No space left on device' | head -1; "
                                              "rm /big; echo ok > /small && cat /small",
                                              NULL},
                        NULL, NULL, &rc);
    ck_assert_str_eq(out, "No space left on device\nok\n");
    free(out);
    /* The layer is the capped file system's. */
    ck_assert(strstr(sbx_sandbox_upper_dir(sb), "/disk/upper") != NULL);
    mounts = sbx_test_slurp("/proc/self/mountinfo");
    ck_assert(strstr(mounts, ctx.state_dir) != NULL);
    free(mounts);
    destroy(sb);
    mounts = sbx_test_slurp("/proc/self/mountinfo");
    ck_assert_msg(strstr(mounts, ctx.state_dir) == NULL, "left mounted:\n%s", mounts);
    free(mounts);
    cfg = sbx_test_config(&ctx);
    cfg.disk_mib = 8;
    {
        sbx_error err = {0};
        ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -EINVAL);
    }
}
END_TEST

/* An image mounted into a running sandbox: its files, writable (what is
 * written lands in the mount's own layer, the sandbox root's), an empty
 * directory when there is no image; never through a symlink. */
START_TEST(test_mount_image)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    sbx_sandbox *sb = start_idle(&cfg);
    sbx_error err = {0};
    char path[PATH_MAX], *out;
    struct stat st;
    int rc;

    ck_assert_msg(sbx_sandbox_mount_image(sb, (const char *const *)ctx.layers, "/mnt/img", &err) ==
                      0,
                  "%s", err.message);
    ck_assert_msg(sbx_sandbox_mount_image(sb, NULL, "/data/empty", &err) == 0, "%s", err.message);
    out = sbx_test_exec(sb,
                        (const char *const[]){"sh", "-c",
                                              "test -x /mnt/img/bin/sh && echo image; "
                                              "ls /data/empty | wc -l; echo w > /mnt/img/new; "
                                              "echo e > /data/empty/f; cat /mnt/img/new; "
                                              "grep ' /mnt/img ' /proc/self/mountinfo | grep -q "
                                              "nosuid && echo nosuid",
                                              NULL},
                        NULL, NULL, &rc);
    ck_assert_str_eq(out, "image\n0\nw\nnosuid\n");
    free(out);
    /* The writes: in the mounts' own layers, owned by the sandbox's root. */
    snprintf(path, sizeof(path), "%s/mounts/0/upper/new", sbx_sandbox_upper_dir(sb));
    *strstr(path, "/upper/mounts") = '\0';
    strcat(path, "/mounts/0/upper/new");
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_ge(st.st_uid, 100000);
    /* Refused: a destination through a symlink, a reserved one. */
    out = sbx_test_exec(sb, (const char *const[]){"ln", "-s", "/", "/link", NULL}, NULL, NULL, &rc);
    free(out);
    ck_assert_int_eq(sbx_sandbox_mount_image(sb, NULL, "/link/x", &err), -ELOOP);
    ck_assert_int_eq(sbx_sandbox_mount_image(sb, NULL, "/proc/x", &err), -EINVAL);
    destroy(sb);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_memory_oom)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    struct sbx_exit ex;
    char *out;

    cfg.limits.memory_bytes = 64ull << 20;
    out = RUN_CFG(&cfg, PROBE, "hog", "256");
    ck_assert_int_eq(ex.reason, SBX_FINISH_OOM);
    ck_assert_int_eq(ex.returncode, 137);
    free(out);
}
END_TEST

/* An OOM in an exec'd process, not the entrypoint, still ends the sandbox. */
START_TEST(test_memory_oom_in_exec_ends_sandbox)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    sbx_sandbox *sb;
    struct sbx_exit ex;
    sbx_error err;
    int rc;
    char *out;

    cfg.limits.memory_bytes = 64ull << 20;
    sb = start_idle(&cfg);
    out = sbx_test_exec(sb, (const char *const[]){PROBE, "hog", "256", NULL}, NULL, NULL, &rc);
    ck_assert_int_eq(rc, 137);
    ck_assert_int_eq(sbx_sandbox_wait(sb, 10000, &ex, &err), 1);
    ck_assert_int_eq(ex.reason, SBX_FINISH_OOM);
    ck_assert_int_eq(ex.returncode, 137);
    free(out);
    destroy(sb);
}
END_TEST

START_TEST(test_pids_limit_stops_fork_bomb)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    struct sbx_exit ex;
    char *out;

    cfg.limits.pids_max = 32;
    out = RUN_CFG(&cfg, PROBE, "forkbomb");
    ck_assert_int_eq(ex.returncode, 0);
    ck_assert_ptr_nonnull(sbx_test_value(out, "forked"));
    ck_assert_int_lt(atoi(sbx_test_value(out, "forked")), 32);
    ck_assert_str_eq(sbx_test_value(out, "error"), "EAGAIN");
    free(out);
}
END_TEST

START_TEST(test_cpu_quota)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    struct sbx_exit ex;
    double cpu, wall;
    char *out;

    cfg.limits.cpu_quota_us = 20000; /* 0.2 cores */
    cfg.limits.cpu_period_us = 100000;
    out = RUN_CFG(&cfg, PROBE, "spin", "2");
    ck_assert_msg(sbx_test_value(out, "cpu_ms") != NULL, "probe said: %s", out);
    ck_assert_int_eq(sscanf(sbx_test_value(out, "cpu_ms"), "%lf wall_ms %lf", &cpu, &wall), 2);
    ck_assert_msg(wall >= 1900, "spun for %.0f ms", wall);
    ck_assert_msg(cpu / wall < 0.35, "used %.0f ms of cpu in %.0f ms at a 20%% quota", cpu, wall);
    free(out);
}
END_TEST

START_TEST(test_stats)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    struct sbx_stats st;
    sbx_error err;
    sbx_sandbox *sb;
    int rc;
    char *out;

    cfg.limits.memory_bytes = 256ull << 20;
    sb = start_idle(&cfg);
    out = sbx_test_exec(sb, (const char *const[]){PROBE, "spin", "0.3", NULL}, NULL, NULL, &rc);
    ck_assert_int_eq(sbx_sandbox_stats(sb, &st, &err), 0);
    ck_assert_uint_gt(st.cpu_usage_ns, 100000000ull);
    ck_assert_uint_gt(st.memory_peak, 0);
    ck_assert_uint_ge(st.pids_current, 1);
    free(out);
    destroy(sb);
}
END_TEST

/* ---- seccomp, capabilities, masked paths, fds ---- */

static void assert_seccomp(const char *out)
{
    static const char *const eperm[] = {
        "unshare",
        "setns",
        "mount",
        "pivot_root",
        "keyctl",
        "add_key",
        "bpf",
        "userfaultfd",
        "io_uring_setup",
        "perf_event_open",
        "kexec_load",
        "init_module",
        "open_by_handle_at",
    };

    for (size_t i = 0; i < sizeof(eperm) / sizeof(eperm[0]); i++) {
        const char *v = sbx_test_value(out, eperm[i]);
        ck_assert_msg(v != NULL, "probe did not try %s:\n%s", eperm[i], out);
        ck_assert_msg(!strcmp(v, "EPERM"), "%s gave %s, not EPERM", eperm[i], v);
    }
    ck_assert_str_eq(sbx_test_value(out, "clone3"), "ENOSYS");
}

START_TEST(test_seccomp_entrypoint)
{
    struct sbx_exit ex;
    char *out = RUN(PROBE, "seccomp");

    assert_seccomp(out);
    free(out);
}
END_TEST

START_TEST(test_seccomp_no_userns)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    struct sbx_exit ex;
    char *out;

    cfg.no_userns = true;
    out = RUN_CFG(&cfg, PROBE, "seccomp");
    assert_seccomp(out);
    free(out);
}
END_TEST

/* The filter covers x86_64 alone: an i386 (int $0x80) or x32 syscall kills
 * the workload with SIGSYS, which init reports as 128 + SIGSYS. */
START_TEST(test_seccomp_kills_32bit_abis)
{
    static const char *const calls[][2] = {
        {"int80", "getpid"}, {"int80", "unshare"}, {"x32", "unshare"}};
    struct sbx_exit ex;

    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        char *out = RUN(PROBE, calls[i][0], calls[i][1]);

        ck_assert_msg(ex.returncode == 128 + SIGSYS, "%s %s: returncode %d, want %d; output:\n%s",
                      calls[i][0], calls[i][1], ex.returncode, 128 + SIGSYS, out);
        free(out);
    }
}
END_TEST

static unsigned long long hexval(const char *out, const char *key)
{
    const char *v = sbx_test_value(out, key);
    ck_assert_msg(v != NULL, "no %s in:\n%s", key, out);
    return strtoull(v, NULL, 16);
}

static void assert_caps(const char *out, bool root)
{
    ck_assert_uint_eq(hexval(out, "CapBnd"), DOCKER_CAPS);
    ck_assert_uint_eq(hexval(out, "CapEff"), root ? DOCKER_CAPS : 0);
    ck_assert_uint_eq(hexval(out, "CapPrm"), root ? DOCKER_CAPS : 0);
    ck_assert_uint_eq(hexval(out, "CapInh"), 0);
    ck_assert_uint_eq(hexval(out, "CapAmb"), 0);
    ck_assert_str_eq(sbx_test_value(out, "NoNewPrivs"), "1");
    ck_assert_str_eq(sbx_test_value(out, "Seccomp"), "2");
}

START_TEST(test_capabilities)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    struct sbx_exit ex;
    char *out = RUN(PROBE, "caps");

    assert_caps(out, true);
    free(out);
    cfg.uid = 1000;
    cfg.gid = 1000;
    out = RUN_CFG(&cfg, PROBE, "caps");
    assert_caps(out, false);
    free(out);
}
END_TEST

START_TEST(test_masked_and_readonly_paths)
{
    struct sbx_exit ex;
    char *out =
        RUN("sh", "-c",
            "echo kcore $(wc -c < /proc/kcore 2>/dev/null || echo absent); "
            "echo keys $(wc -c < /proc/keys); "
            "echo acpi $(ls -A /proc/acpi 2>/dev/null | wc -l); "
            "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo procsys writable || echo "
            "procsys ro; "
            "echo 1 > /proc/sysrq-trigger 2>/dev/null && echo sysrq writable || echo sysrq ro; "
            "touch /sys/x 2>/dev/null && echo sys writable || echo sys ro");

    ck_assert_msg(!strcmp(sbx_test_value(out, "kcore"), "0") ||
                      !strcmp(sbx_test_value(out, "kcore"), "absent"),
                  "%s", out);
    ck_assert_str_eq(sbx_test_value(out, "keys"), "0");
    ck_assert_str_eq(sbx_test_value(out, "acpi"), "0");
    ck_assert_str_eq(sbx_test_value(out, "procsys"), "ro");
    ck_assert_str_eq(sbx_test_value(out, "sysrq"), "ro");
    ck_assert_str_eq(sbx_test_value(out, "sys"), "ro");
    free(out);
}
END_TEST

START_TEST(test_minimal_dev)
{
    struct sbx_exit ex;
    char *out = RUN("sh", "-c",
                    "ls /dev | tr '\\n' ' '; echo; head -c 4 /dev/urandom | wc -c; "
                    "ls /dev/sda /dev/vda /dev/mem 2>&1 | grep -c 'No such'");

    ck_assert_msg(
        strstr(out, "full null ptmx pts random shm stderr stdin stdout tty urandom zero") ||
            strstr(out,
                   "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero"),
        "/dev: %s", out);
    ck_assert_msg(strstr(out, "\n4\n3\n") != NULL, "%s", out);
    free(out);
}
END_TEST

/* /dev, /dev/shm, /tmp and the masked directories are one tmpfs (one
 * superblock: the kernel's memory per sandbox grew with the number of
 * sandboxes for each instance), bound from separate directories with
 * their own flags: nothing written in one shows in another. */
START_TEST(test_one_tmpfs)
{
    struct sbx_exit ex;
    char *out = RUN(
        "sh", "-c",
        "echo tmpfs $(grep ' - tmpfs ' /proc/self/mountinfo | cut -d' ' -f3 | sort -u | wc -l); "
        "echo mounts $(grep -c ' - tmpfs ' /proc/self/mountinfo); "
        "echo x > /tmp/a && echo y > /dev/shm/b && echo tmpwrite ok; "
        "echo seen $(ls -A /tmp /dev/shm /dev | grep -c '^[ab]$'); "
        "echo tmpmode $(stat -c %a /tmp) shmmode $(stat -c %a /dev/shm); "
        "for d in /dev/shm /tmp; do printf '#!/bin/sh\\nexit 0\\n' > $d/t; chmod 755 $d/t; done; "
        "/dev/shm/t 2>/dev/null && echo shm exec || echo shm noexec; "
        "/tmp/t && echo tmp exec || echo tmp noexec; "
        "touch /sys/firmware/x 2>/dev/null && echo masked writable || echo masked ro; "
        "echo firmware $(ls -A /sys/firmware | wc -l)");

    /* One superblock, bound at /dev, /dev/shm, /tmp and the masked dirs. */
    ck_assert_str_eq(sbx_test_value(out, "tmpfs"), "1");
    ck_assert_int_ge(atoi(sbx_test_value(out, "mounts")), 3);
    ck_assert_str_eq(sbx_test_value(out, "tmpwrite"), "ok");
    ck_assert_str_eq(sbx_test_value(out, "seen"), "2"); /* a in /tmp, b in /dev/shm only */
    ck_assert_msg(strstr(out, "tmpmode 1777 shmmode 1777") != NULL, "%s", out);
    ck_assert_str_eq(sbx_test_value(out, "shm"), "noexec");
    ck_assert_str_eq(sbx_test_value(out, "tmp"), "exec");
    ck_assert_str_eq(sbx_test_value(out, "masked"), "ro");
    ck_assert_str_eq(sbx_test_value(out, "firmware"), "0");
    free(out);
}
END_TEST

START_TEST(test_only_stdio_crosses)
{
    struct sbx_exit ex;
    /* An fd the caller forgot to mark close-on-exec must not leak in. */
    int leak = open("/etc/hostname", O_RDONLY);
    char *out;

    ck_assert_int_ge(leak, 3);
    out = RUN(PROBE, "fds");
    ck_assert_str_eq(out, "fd 0\nfd 1\nfd 2\n");
    free(out);
    close(leak);
}
END_TEST

/* ---- init ---- */

START_TEST(test_signal_exit_status)
{
    struct sbx_exit ex;
    char *out = RUN(PROBE, "kill-self", "15");

    ck_assert_int_eq(ex.reason, SBX_FINISH_EXITED);
    ck_assert_int_eq(ex.returncode, 143);
    free(out);
}
END_TEST

START_TEST(test_init_forwards_signals)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    const char *const argv[] = {"sh", "-c",
                                "trap 'echo got TERM; exit 42' TERM; echo ready; "
                                "while :; do sleep 0.05; done",
                                NULL};
    sbx_sandbox *sb;
    struct sbx_exit ex;
    sbx_error err;
    char buf[64] = {0};
    int p[2];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    cfg.argv = argv;
    cfg.stdio[1] = p[1];
    sb = start_idle(&cfg);
    close(p[1]);
    ck_assert_int_gt(read(p[0], buf, sizeof(buf) - 1), 0);
    ck_assert_str_eq(buf, "ready\n");
    ck_assert_int_eq(kill(sbx_sandbox_pid(sb), SIGTERM), 0);
    ck_assert_int_eq(sbx_sandbox_wait(sb, 10000, &ex, &err), 1);
    ck_assert_int_eq(ex.returncode, 42);
    close(p[0]);
    destroy(sb);
}
END_TEST

START_TEST(test_init_reaps_zombies)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    sbx_sandbox *sb = start_idle(&cfg);
    int rc;
    char *out;

    /* Orphans re-parented to init must not stay zombies. */
    out = sbx_test_exec(
        sb, (const char *const[]){"sh", "-c", "for i in 1 2 3 4 5; do (sleep 0.01 &) ; done", NULL},
        NULL, NULL, &rc);
    free(out);
    usleep(300000);
    out = sbx_test_exec(
        sb,
        (const char *const[]){"sh", "-c", "grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l", NULL},
        NULL, NULL, &rc);
    ck_assert_str_eq(out, "0\n");
    free(out);
    destroy(sb);
}
END_TEST

START_TEST(test_idle_init_stops_on_term_from_outside)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    sbx_sandbox *sb = start_idle(&cfg);
    struct sbx_exit ex;
    sbx_error err;
    int rc;
    char *out;

    /* From inside, pid 1 ignores SIGTERM... */
    out = sbx_test_exec(sb, (const char *const[]){"kill", "-TERM", "1", NULL}, NULL, NULL, &rc);
    free(out);
    ck_assert_int_eq(sbx_sandbox_wait(sb, 200, &ex, &err), 0);
    /* ...from outside it ends the sandbox. */
    ck_assert_int_eq(kill(sbx_sandbox_pid(sb), SIGTERM), 0);
    ck_assert_int_eq(sbx_sandbox_wait(sb, 10000, &ex, &err), 1);
    ck_assert_int_eq(ex.returncode, 143);
    destroy(sb);
}
END_TEST

/* ---- env, workdir, user, rlimits ---- */

START_TEST(test_env_workdir_user_rlimits)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    const char *const env[] = {"PATH=/bin:/usr/bin", "FOO=bar baz", NULL};
    struct sbx_rlimit rl = {.resource = RLIMIT_NOFILE, .soft = 100, .hard = 200};
    struct sbx_exit ex;
    char *out;

    cfg.env = env;
    cfg.workdir = "/tmp/made/here"; /* made when missing, as Docker's WORKDIR */
    cfg.uid = 1000;
    cfg.gid = 1001;
    cfg.rlimits = &rl;
    cfg.n_rlimits = 1;
    out = RUN_CFG(&cfg, "sh", "-c",
                  "echo pwd $(pwd); echo foo $FOO; echo uid $(id -u); "
                  "echo gid $(id -g); echo nofile $(ulimit -n); echo n $(env | wc -l); "
                  "echo umask $(umask)");
    ck_assert_str_eq(sbx_test_value(out, "pwd"), "/tmp/made/here");
    ck_assert_str_eq(sbx_test_value(out, "foo"), "bar baz");
    ck_assert_str_eq(sbx_test_value(out, "uid"), "1000");
    ck_assert_str_eq(sbx_test_value(out, "gid"), "1001");
    ck_assert_str_eq(sbx_test_value(out, "nofile"), "100");
    /* A container's umask, whatever its creator's. */
    ck_assert_str_eq(sbx_test_value(out, "umask"), "0022");
    free(out);
}
END_TEST

START_TEST(test_bad_entrypoint_fails_create)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    const char *const argv[] = {"/no/such/program", NULL};
    sbx_sandbox *sb = NULL;
    sbx_error err = {0};

    cfg.argv = argv;
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -ENOENT);
    ck_assert_msg(strstr(err.message, "/no/such/program") != NULL, "%s", err.message);

    cfg = sbx_test_config(&ctx);
    cfg.workdir = "relative";
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -EINVAL);
    cfg = sbx_test_config(&ctx);
    cfg.id = "../escape";
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -EINVAL);
}
END_TEST

/* The root file system is built while the caller makes the cgroup: a
 * failure there still comes back as the child's own error, not as the
 * setup socket's EPIPE. */
START_TEST(test_rootfs_error_is_reported)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    const char *const layers[] = {"/no/such/layer", NULL};
    sbx_sandbox *sb = NULL;
    sbx_error err = {0};

    /* Without a user namespace the layers are not idmapped by the caller:
     * the child's overlay mount is what fails. */
    cfg.no_userns = true;
    cfg.layers = layers;
    ck_assert_int_eq(sbx_sandbox_create(&cfg, &sb, &err), -ENOENT);
    ck_assert_msg(strstr(err.message, "mount overlay") != NULL, "%s", err.message);
    ck_assert_ptr_null(sb);
}
END_TEST

/* The first process runs on another CPU than its creator's while both set
 * the sandbox up; afterwards the sandbox has all of the caller's CPUs. */
START_TEST(test_sandbox_gets_the_callers_cpus)
{
    struct sbx_exit ex;
    char mine[256] = "", *out, *line;
    FILE *f = fopen("/proc/self/status", "r");

    ck_assert_ptr_nonnull(f);
    while (fgets(mine, sizeof(mine), f) && strncmp(mine, "Cpus_allowed_list:", 18))
        ;
    fclose(f);
    line = mine + 18;
    line += strspn(line, " \t");
    line[strcspn(line, "\n")] = '\0';
    out = RUN("sh", "-c",
              "echo init $(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/1/status); "
              "echo self $(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)");
    ck_assert_int_eq(ex.returncode, 0);
    ck_assert_str_eq(sbx_test_value(out, "init"), line);
    ck_assert_str_eq(sbx_test_value(out, "self"), line);
    free(out);
}
END_TEST

/* A sandbox made ahead (idle) is put to use: new limits, then its
 * entrypoint, whose exit ends the sandbox like a created one's. */
START_TEST(test_late_entrypoint)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    struct sbx_limits lim = {.memory_bytes = 48ull << 20, .pids_max = 64};
    struct sbx_exec_config ec = {.argv = (const char *const[]){"sh", "-c", "echo hi; exit 5", NULL},
                                 .stdio = {-1, -1, -1},
                                 .entrypoint = true};
    struct sbx_process p;
    struct sbx_exit ex;
    sbx_error err = {0};
    sbx_sandbox *sb;
    char buf[64] = "";
    int out[2];
    ssize_t n;

    cfg.limits.memory_bytes = 256ull << 20;
    sb = start_idle(&cfg);
    ck_assert_msg(sbx_sandbox_set_limits(sb, &lim, &err) == 0, "%s", err.message);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    ec.stdio[1] = out[1];
    ck_assert_msg(sbx_sandbox_exec(sb, &ec, &p, &err) == 0, "%s", err.message);
    close(out[1]);
    n = read(out[0], buf, sizeof(buf) - 1);
    close(out[0]);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(buf, "hi\n");
    ck_assert_int_eq(sbx_sandbox_wait(sb, 10000, &ex, &err), 1);
    ck_assert_int_eq(ex.reason, SBX_FINISH_EXITED);
    ck_assert_int_eq(ex.returncode, 5);
    close(p.pidfd);
    close(p.status_pidfd);
    destroy(sb);

    /* The new memory limit holds: 128 MiB ends it as OOM. */
    cfg = sbx_test_config(&ctx);
    cfg.limits.memory_bytes = 256ull << 20;
    sb = start_idle(&cfg);
    ck_assert_msg(sbx_sandbox_set_limits(sb, &lim, &err) == 0, "%s", err.message);
    ec.argv = (const char *const[]){PROBE, "hog", "128", NULL};
    ec.stdio[1] = -1;
    ck_assert_msg(sbx_sandbox_exec(sb, &ec, &p, &err) == 0, "%s", err.message);
    /* One entrypoint only. */
    ck_assert_int_eq(sbx_sandbox_exec(sb, &ec, &(struct sbx_process){0}, &err), -EBUSY);
    ck_assert_int_eq(sbx_sandbox_wait(sb, 30000, &ex, &err), 1);
    ck_assert_int_eq(ex.reason, SBX_FINISH_OOM);
    ck_assert_int_eq(ex.returncode, 137);
    close(p.pidfd);
    close(p.status_pidfd);
    destroy(sb);

    /* Not where the sandbox was created with one; no memory limit where it
     * was created without. */
    cfg = sbx_test_config(&ctx);
    cfg.argv = (const char *const[]){"sleep", "30", NULL};
    sb = start_idle(&cfg);
    ec.argv = (const char *const[]){"true", NULL};
    ck_assert_int_eq(sbx_sandbox_exec(sb, &ec, &(struct sbx_process){0}, &err), -EBUSY);
    ck_assert_int_eq(sbx_sandbox_set_limits(sb, &lim, &err), -EINVAL);
    destroy(sb);
}
END_TEST

/* ---- exec ---- */

START_TEST(test_exec)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    sbx_sandbox *sb = start_idle(&cfg);
    const char *const env[] = {"PATH=/bin", "GREETING=hi", NULL};
    int rc;
    char *out;

    out = sbx_test_exec(sb, (const char *const[]){"sh", "-c", "echo $GREETING; pwd; echo $$", NULL},
                        env, "/etc", &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(!strncmp(out, "hi\n/etc\n", 8), "%s", out);
    ck_assert_int_lt(atoi(out + 8), 100); /* a pid of the sandbox's namespace */
    free(out);

    out = sbx_test_exec(sb, (const char *const[]){PROBE, "caps", NULL}, NULL, NULL, &rc);
    assert_caps(out, true);
    free(out);
    out = sbx_test_exec(sb, (const char *const[]){PROBE, "seccomp", NULL}, NULL, NULL, &rc);
    assert_seccomp(out);
    free(out);
    out = sbx_test_exec(sb, (const char *const[]){PROBE, "fds", NULL}, NULL, NULL, &rc);
    ck_assert_str_eq(out, "fd 0\nfd 1\nfd 2\n");
    free(out);
    out = sbx_test_exec(sb, (const char *const[]){"sh", "-c", "exit 7", NULL}, NULL, NULL, &rc);
    ck_assert_int_eq(rc, 7);
    free(out);
    out = sbx_test_exec(sb, (const char *const[]){PROBE, "kill-self", "9", NULL}, NULL, NULL, &rc);
    ck_assert_int_eq(rc, 137);
    free(out);
    /* The exec'd process shares the sandbox's filesystem. */
    out = sbx_test_exec(sb, (const char *const[]){"sh", "-c", "echo x > /tmp/shared", NULL}, NULL,
                        NULL, &rc);
    free(out);
    out = sbx_test_exec(sb, (const char *const[]){"cat", "/tmp/shared", NULL}, NULL, NULL, &rc);
    ck_assert_str_eq(out, "x\n");
    free(out);
    destroy(sb);
}
END_TEST

START_TEST(test_exec_errors)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    sbx_sandbox *sb = start_idle(&cfg);
    struct sbx_exec_config ec = {.argv = (const char *const[]){"/nope", NULL},
                                 .stdio = {-1, -1, -1}};
    struct sbx_process p;
    sbx_error err = {0};

    ck_assert_int_eq(sbx_sandbox_exec(sb, &ec, &p, &err), -ENOENT);
    ck_assert_msg(strstr(err.message, "/nope") != NULL, "%s", err.message);
    ec.argv = (const char *const[]){"true", NULL};
    ec.workdir = "/does/not/exist";
    ck_assert_int_eq(sbx_sandbox_exec(sb, &ec, &p, &err), -ENOENT);
    ec.workdir = NULL;
    ck_assert_int_eq(sbx_sandbox_terminate(sb, &err), 0);
    ck_assert_int_eq(sbx_sandbox_exec(sb, &ec, &p, &err), -ESRCH);
    destroy(sb);
}
END_TEST

START_TEST(test_exec_pty)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    sbx_sandbox *sb = start_idle(&cfg);
    struct sbx_exec_config ec = {
        .argv =
            (const char *const[]){"sh", "-c", "tty; stty size; read line; echo got $line", NULL},
        .pty = true,
        .rows = 33,
        .cols = 99};
    struct sbx_process p;
    sbx_error err = {0};
    char buf[4096];
    size_t len = 0;
    int rc;

    ck_assert_msg(sbx_sandbox_exec(sb, &ec, &p, &err) == 0, "exec: %s", err.message);
    ck_assert_int_ge(p.pty_master, 0);
    ck_assert_int_eq(write(p.pty_master, "hello\n", 6), 6);
    for (;;) {
        struct pollfd pf = {.fd = p.pty_master, .events = POLLIN};
        ssize_t n;
        if (poll(&pf, 1, 5000) <= 0)
            break;
        n = read(p.pty_master, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break; /* EIO once the terminal's last user is gone */
        len += (size_t)n;
    }
    buf[len] = '\0';
    ck_assert_msg(strstr(buf, "/dev/pts/0") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "33 99") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "got hello") != NULL, "%s", buf);
    ck_assert_int_eq(sbx_process_wait(&p, 5000, &rc, &err), 1);
    ck_assert_int_eq(rc, 0);
    close(p.pty_master);
    destroy(sb);
}
END_TEST

/* ---- terminate and cleanup ---- */

START_TEST(test_terminate)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    sbx_sandbox *sb = start_idle(&cfg);
    struct sbx_exit ex;
    sbx_error err;
    struct sbx_process p;
    struct sbx_exec_config ec = {.argv = (const char *const[]){"sleep", "1000", NULL},
                                 .stdio = {-1, -1, -1}};
    int rc;

    ck_assert_int_eq(sbx_sandbox_exec(sb, &ec, &p, &err), 0);
    ck_assert_int_eq(sbx_sandbox_wait(sb, 100, &ex, &err), 0);
    ck_assert_int_eq(sbx_sandbox_terminate(sb, &err), 0);
    ck_assert_int_eq(sbx_sandbox_terminate(sb, &err), 0); /* idempotent */
    ck_assert_int_eq(sbx_sandbox_wait(sb, 10000, &ex, &err), 1);
    ck_assert_int_eq(ex.reason, SBX_FINISH_TERMINATED);
    ck_assert_int_eq(ex.returncode, 137);
    /* Everything inside died with it, exec'd processes included. */
    ck_assert_int_eq(sbx_process_wait(&p, 5000, &rc, &err), 1);
    ck_assert_int_eq(rc, 137);
    destroy(sb);
}
END_TEST

START_TEST(test_terminate_after_exit_keeps_returncode)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    const char *const argv[] = {"sh", "-c", "exit 5", NULL};
    sbx_sandbox *sb;
    struct sbx_exit ex;
    sbx_error err;

    cfg.argv = argv;
    sb = start_idle(&cfg);
    ck_assert_int_eq(sbx_sandbox_wait(sb, 10000, &ex, &err), 1);
    ck_assert_int_eq(sbx_sandbox_terminate(sb, &err), 0);
    ck_assert_int_eq(sbx_sandbox_poll(sb, &ex, &err), 1);
    ck_assert_int_eq(ex.reason, SBX_FINISH_EXITED);
    ck_assert_int_eq(ex.returncode, 5);
    destroy(sb);
}
END_TEST

static int count_fds(void)
{
    return sbx_test_count_dir("/proc/self/fd");
}

/* 100 create/terminate cycles leave no cgroup, mount, namespace, directory,
 * fd or process behind (teardown checks dirs, cgroups and processes). */
START_TEST(test_cleanup_cycles)
{
    char *mounts_before = sbx_test_slurp("/proc/self/mountinfo"), *mounts_after;
    int fds_before = count_fds();
    char ns_before[64] = {0}, ns_after[64] = {0};

    readlink("/proc/self/ns/net", ns_before, sizeof(ns_before) - 1);
    for (int i = 0; i < 100; i++) {
        struct sbx_config cfg = sbx_test_config(&ctx);
        sbx_sandbox *sb = start_idle(&cfg);
        struct sbx_exit ex;
        sbx_error err;
        if (i % 2) {
            ck_assert_int_eq(sbx_sandbox_terminate(sb, &err), 0);
            ck_assert_int_eq(sbx_sandbox_wait(sb, 10000, &ex, &err), 1);
        }
        destroy(sb);
    }
    mounts_after = sbx_test_slurp("/proc/self/mountinfo");
    ck_assert_str_eq(mounts_before, mounts_after);
    ck_assert_int_eq(count_fds(), fds_before);
    readlink("/proc/self/ns/net", ns_after, sizeof(ns_after) - 1);
    ck_assert_str_eq(ns_before, ns_after);
    /* Namespaces live only as long as a process, fd or mount holds them:
     * with none of those left, none of the 100 sandboxes' namespaces remain. */
    free(mounts_before);
    free(mounts_after);
}
END_TEST

START_TEST(test_cleanup_after_crash)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    sbx_sandbox *sb = start_idle(&cfg);
    sbx_error err;
    char id[64];
    pid_t init = sbx_sandbox_pid(sb);

    /* Simulate a crashed owner: the handle is lost, the sandbox still runs. */
    snprintf(id, sizeof(id), "%s", cfg.id);
    ck_assert_int_eq(kill(init, 0), 0);
    ck_assert_int_eq(sbx_sandbox_cleanup(ctx.run_dir, ctx.state_dir, ctx.cgroup_parent, id, &err),
                     0);
    /* Cleanup killed it through its cgroup and removed its directories. */
    {
        struct sbx_exit ex;
        char path[PATH_MAX];
        ck_assert_int_eq(sbx_sandbox_wait(sb, 10000, &ex, &err), 1);
        ck_assert_int_eq(ex.returncode, 137);
        snprintf(path, sizeof(path), "%s/sandboxes/%s", ctx.run_dir, id);
        ck_assert_int_eq(access(path, F_OK), -1);
    }
    /* destroy() on the stale handle finds nothing left to do. */
    ck_assert_msg(sbx_sandbox_destroy(sb, &err) == 0, "destroy: %s", err.message);
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc;

#define CASE(name, timeout)                                                                        \
    tc = tcase_create(#name);                                                                      \
    tcase_add_checked_fixture(tc, setup, teardown);                                                \
    tcase_set_timeout(tc, timeout);                                                                \
    tcase_add_test(tc, name);                                                                      \
    suite_add_tcase(s, tc)

    CASE(test_hello_exit_code, 30);
    CASE(test_pid_namespace, 30);
    CASE(test_hostname, 30);
    CASE(test_root_is_not_root_outside, 30);
    CASE(test_distinct_uid_ranges, 30);
    CASE(test_state_spare, 30);
    CASE(test_no_userns_is_real_root, 30);
    CASE(test_mount_propagation, 30);
    CASE(test_mounts, 30);
    CASE(test_mounts_no_userns, 30);
    CASE(test_disk_limit, 30);
    CASE(test_mount_image, 30);
    CASE(test_memory_oom, 60);
    CASE(test_memory_oom_in_exec_ends_sandbox, 60);
    CASE(test_pids_limit_stops_fork_bomb, 60);
    CASE(test_cpu_quota, 60);
    CASE(test_stats, 30);
    CASE(test_seccomp_entrypoint, 30);
    CASE(test_seccomp_no_userns, 30);
    CASE(test_seccomp_kills_32bit_abis, 30);
    CASE(test_capabilities, 30);
    CASE(test_masked_and_readonly_paths, 30);
    CASE(test_one_tmpfs, 30);
    CASE(test_minimal_dev, 30);
    CASE(test_only_stdio_crosses, 30);
    CASE(test_signal_exit_status, 30);
    CASE(test_init_forwards_signals, 30);
    CASE(test_init_reaps_zombies, 30);
    CASE(test_idle_init_stops_on_term_from_outside, 30);
    CASE(test_env_workdir_user_rlimits, 30);
    CASE(test_bad_entrypoint_fails_create, 30);
    CASE(test_rootfs_error_is_reported, 30);
    CASE(test_sandbox_gets_the_callers_cpus, 30);
    CASE(test_late_entrypoint, 60);
    CASE(test_exec, 30);
    CASE(test_exec_errors, 30);
    CASE(test_exec_pty, 30);
    CASE(test_terminate, 30);
    CASE(test_terminate_after_exit_keeps_returncode, 30);
    CASE(test_cleanup_cycles, 120);
    CASE(test_cleanup_after_crash, 30);
    CASE(test_cgroup_v2_sandbox, 30);
    CASE(test_netpool_sandboxes, 30);
    CASE(test_netpool_exec_joins_the_namespace, 30);
    CASE(test_own_netns_keeps_raw_sockets, 30);
    CASE(test_netpool_stopped, 30);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    sbx_test_require();
    sr = srunner_create(runtime_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (sbx_test_final_sweep() > 0 && !failed) {
        printf("FAIL: sandboxes were left behind by passing tests\n");
        failed = 1;
    }
    return failed ? 1 : 0;
}
