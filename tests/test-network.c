/* test-network.c — the sandboxes' network against the real kernel: a bridge
 * of the test's own, veths made by the namespace pool, NAT to an "outside"
 * network namespace the test makes (203.0.113.0/30, a documentation range:
 * nothing real; a /30 of it per run), and the firewall: no way from a sandbox to the host, to a
 * private range or to another sandbox.  Only loopback and namespaces made
 * here carry traffic; everything made is removed at the end. */
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static struct sbx_test_ctx ctx;
static struct sbx_network net;
static sbx_netpool *pool;
static char bridge[16], outside[32], outside_host[16], private_ns[32], private_host[16];
static pid_t server_pid, private_pid, host_pid, any_pid;

/* A /30 of each range per run: a namespace of an earlier run may still be
 * going away (the kernel frees them in the background), with its address. */
static char outside_host_addr[16], outside_addr[16], private_host_addr[16], private_addr[16];
#define OUTSIDE_HOST outside_host_addr
#define OUTSIDE_ADDR outside_addr
#define PRIVATE_ADDR private_addr

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    int r;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    r = system(cmd);
    return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

/* A TCP server that answers every connection with the address it came
 * from, then closes it: run in namespace ns (NULL: the host's). */
static pid_t serve_peer_address(const char *ns, const char *addr, int port)
{
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char code[512];

        int null = open("/dev/null", O_RDWR);

        setpgid(0, 0);
        /* Not the test's output: a reader of it would wait for us. */
        dup2(null, 1);
        dup2(null, 2);
        snprintf(code, sizeof(code),
                 "import socket\n"
                 "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                 "s.bind(('%s', %d)); s.listen(16)\n"
                 "while True:\n"
                 "    c, a = s.accept(); c.sendall((a[0] + '\\n').encode()); c.close()\n",
                 addr, port);
        if (ns)
            execlp("ip", "ip", "netns", "exec", ns, "python3", "-c", code, (char *)NULL);
        else
            execlp("python3", "python3", "-c", code, (char *)NULL);
        _exit(127);
    }
    /* Until it listens. */
    for (int i = 0; i < 200; i++) {
        if (ns ? sh("ip netns exec %s sh -c 'ss -ltn | grep -q %s:%d'", ns, addr, port) == 0
               : sh("ss -ltn | grep -q '%s:%d'", addr, port) == 0)
            break;
        usleep(20000);
    }
    return pid;
}

static void stop_server(pid_t *pid)
{
    if (*pid > 0) {
        kill(-*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
    }
    *pid = 0;
}

/* A namespace `ns` behind a veth from the host: host end HOST_ADDR/30, the
 * namespace's end ADDR/30. */
static void make_ns(const char *ns, const char *host_if, const char *host_addr, const char *addr)
{
    ck_assert_int_eq(sh("ip netns add %s", ns), 0);
    ck_assert_int_eq(sh("ip link add %s type veth peer name eth0 netns %s", host_if, ns), 0);
    ck_assert_int_eq(
        sh("ip addr add %s/30 dev %s && ip link set %s up", host_addr, host_if, host_if), 0);
    ck_assert_int_eq(sh("ip netns exec %s sh -c 'ip addr add %s/30 dev eth0 && ip link set eth0 "
                        "up && ip link set lo up && ip route add default via %s'",
                        ns, addr, host_addr),
                     0);
}

static void addr_str(uint32_t a, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

/* Once for the suite, in the runner's process (so that it is undone even
 * when a test fails): the bridge and firewall, the outside and private
 * namespaces with their servers, and a server on the bridge's address. */
static void suite_setup(void)
{
    sbx_error err = {0};
    char cidr[32], gw[16];

    snprintf(bridge, sizeof(bridge), "sbxt%d", (int)getpid() % 100000);
    snprintf(outside, sizeof(outside), "sbxto%d", (int)getpid());
    snprintf(outside_host, sizeof(outside_host), "sbxto%d", (int)getpid() % 100000);
    snprintf(private_ns, sizeof(private_ns), "sbxtp%d", (int)getpid());
    snprintf(private_host, sizeof(private_host), "sbxtp%d", (int)getpid() % 100000);
    snprintf(cidr, sizeof(cidr), "10.213.%d.0/24", (int)(getpid() % 200));
    {
        int k = (int)(getpid() % 60) * 4;
        snprintf(outside_host_addr, 16, "203.0.113.%d", k + 1);
        snprintf(outside_addr, 16, "203.0.113.%d", k + 2);
        snprintf(private_host_addr, 16, "192.168.213.%d", k + 1);
        snprintf(private_addr, 16, "192.168.213.%d", k + 2);
    }
    ck_assert_msg(sbx_network_parse(cidr, &net, &err) == 0, "%s", err.message);
    net.bridge = bridge;
    net.run_dir = "/run"; /* per test: its own run dir (setup) */
    ck_assert_msg(sbx_network_setup(&net, &err) == 0, "setup: %s", err.message);
    make_ns(outside, outside_host, OUTSIDE_HOST, OUTSIDE_ADDR);
    make_ns(private_ns, private_host, private_host_addr, PRIVATE_ADDR);
    server_pid = serve_peer_address(outside, OUTSIDE_ADDR, 8080);
    private_pid = serve_peer_address(private_ns, PRIVATE_ADDR, 8080);
    addr_str(net.subnet + 1, gw);
    host_pid = serve_peer_address(NULL, gw, 8081);
    /* As the daemon's TCP listener would be: on every host address. */
    any_pid = serve_peer_address(NULL, "0.0.0.0", 8082);
}

static void suite_teardown(void)
{
    sbx_error err = {0};

    stop_server(&server_pid);
    stop_server(&private_pid);
    stop_server(&host_pid);
    stop_server(&any_pid);
    sh("ip netns del %s 2>/dev/null", outside);
    sh("ip netns del %s 2>/dev/null", private_ns);
    sh("ip link del %s 2>/dev/null", outside_host);
    sh("ip link del %s 2>/dev/null", private_host);
    ck_assert_msg(sbx_network_teardown(&net, &err) == 0, "teardown: %s", err.message);
    /* Nothing of ours is left: no bridge, no veth, no table.  The veths go
     * with their namespaces, which the kernel frees a little after their
     * last process; their names are sbx + the address in hex. */
    ck_assert_int_eq(if_nametoindex(bridge), 0);
    for (int i = 0; i < 100 && sh("ip -br link | grep -q '^sbx%06x'", net.subnet >> 8) == 0; i++)
        usleep(20000);
    ck_assert_int_ne(sh("ip -br link | grep -q '^sbx%06x'", net.subnet >> 8), 0);
    ck_assert_int_ne(sh("nft list tables | grep -q sandboxd_%s", bridge), 0);
}

static void setup(void)
{
    sbx_error err = {0};

    sbx_test_setup(&ctx);
    net.run_dir = ctx.run_dir;
    ck_assert_msg(sbx_netpool_start(2, &net, &pool, &err) == 0, "netpool: %s", err.message);
}

static void teardown(void)
{
    sbx_netpool_stop(pool);
    pool = NULL;
    sbx_test_teardown(&ctx);
}

/* A namespace from the pool (made in the background: waits for one). */
static void take_ns(struct sbx_netns *ns)
{
    sbx_error err = {0};
    int r;

    for (int tries = 0;
         (r = sbx_netpool_take(sbx_netpool_fd(pool), ns, &err)) == -EAGAIN && tries < 5000; tries++)
        usleep(1000);
    ck_assert_msg(r == 0, "take: %s", err.message);
    ck_assert_uint_ne(ns->addr, 0);
}

static sbx_sandbox *start(const char *const *argv, int out_fd, struct sbx_netns *ns)
{
    struct sbx_config cfg = sbx_test_config(&ctx);
    sbx_sandbox *sb = NULL;
    sbx_error err = {0};

    take_ns(ns);
    cfg.netns = ns;
    cfg.argv = argv;
    cfg.stdio[1] = cfg.stdio[2] = out_fd;
    ck_assert_msg(sbx_sandbox_create(&cfg, &sb, &err) == 0, "create: %s", err.message);
    return sb;
}

/* Runs sh -c cmd in a sandbox on the bridge; returns its output. */
static char *run_on_bridge(const char *cmd, uint32_t *ret_addr)
{
    struct sbx_netns ns = {-1, -1, -1, 0};
    struct sbx_exit ex;
    sbx_error err = {0};
    char *out = calloc(1, 8192);
    size_t len = 0;
    int p[2];
    ssize_t n;
    sbx_sandbox *sb;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    sb = start((const char *const[]){"sh", "-c", cmd, NULL}, p[1], &ns);
    close(p[1]);
    if (ret_addr)
        *ret_addr = ns.addr;
    sbx_netns_close(&ns);
    while (len < 8191 && (n = read(p[0], out + len, 8191 - len)) > 0)
        len += (size_t)n;
    close(p[0]);
    ck_assert_int_eq(sbx_sandbox_wait(sb, 30000, &ex, &err), 1);
    ck_assert_msg(sbx_sandbox_destroy(sb, &err) == 0, "%s", err.message);
    return out;
}

/* eth0 with a leased address in the subnet, a default route via the
 * bridge; the lease is the sandbox's while it runs and gone after. */
static char *bridge_mac(void)
{
    char path[128];

    snprintf(path, sizeof(path), "/sys/class/net/%s/address", bridge);
    return sbx_test_slurp(path);
}

START_TEST(test_eth0_and_lease)
{
    char want[64], lease[PATH_MAX], addr[16], *out, *mac = bridge_mac();
    uint32_t a;

    out = run_on_bridge("ip -4 -o addr show eth0; ip route; ls /sys/class/net | tr '\\n' ' '; echo",
                        &a);
    addr_str(a, addr);
    snprintf(want, sizeof(want), "inet %s/24", addr);
    ck_assert_msg(strstr(out, want), "%s", out);
    ck_assert_msg(strstr(out, "default via 10.213."), "%s", out);
    ck_assert_msg(strstr(out, "eth0 lo"), "%s", out);
    ck_assert_uint_eq(a & 0xffffff00u, net.subnet);
    free(out);
    /* The gateway's MAC stays what it was as ports come and go (a bridge
     * would otherwise take its lowest port's, behind the sandboxes'
     * neighbour entries). */
    out = bridge_mac();
    ck_assert_ptr_nonnull(mac);
    ck_assert_str_eq(out, mac);
    free(out);
    free(mac);
    snprintf(lease, sizeof(lease), "%s/leases/%s", ctx.run_dir, addr);
    ck_assert_int_eq(access(lease, F_OK), -1);
}
END_TEST

/* Egress through the NAT: the outside sees the host's address, not the
 * sandbox's. */
START_TEST(test_egress_is_masqueraded)
{
    char cmd[128], want[32], *out;

    snprintf(cmd, sizeof(cmd), "nc -w 5 %s 8080 </dev/null", OUTSIDE_ADDR);
    snprintf(want, sizeof(want), "%s\n", OUTSIDE_HOST);
    out = run_on_bridge(cmd, NULL);
    ck_assert_str_eq(out, want);
    free(out);
}
END_TEST

/* Not the host (anything bound on the bridge's address), not a private
 * range, not another sandbox. */
START_TEST(test_what_a_sandbox_cannot_reach)
{
    struct sbx_netns ns = {-1, -1, -1, 0};
    char gw[16], cmd[1024], target[16], *out;
    sbx_error err = {0};
    sbx_sandbox *listener;

    addr_str(net.subnet + 1, gw);
    /* The host itself can reach it: the server is up. */
    ck_assert_int_eq(sh("timeout 2 bash -c 'cat </dev/tcp/%s/8081' | grep -q .", gw), 0);

    listener = start(
        (const char *const[]){"nc", "-ll", "-p", "9000", "-e", "echo", "sandbox", NULL}, -1, &ns);
    addr_str(ns.addr, target);
    sbx_netns_close(&ns);
    /* Its listener answers from inside its own sandbox. */
    /* The host's listener on all addresses (a daemon's --listen 0.0.0.0)
     * answers the host itself, but no sandbox, at the bridge's address or
     * at another of the host's (the outside veth's). */
    ck_assert_int_eq(sh("timeout 2 bash -c 'cat </dev/tcp/%s/8082' | grep -q .", OUTSIDE_HOST), 0);
    snprintf(cmd, sizeof(cmd),
             "echo host $(nc -w 2 %s 8081 </dev/null || echo refused); "
             "echo any $(nc -w 2 %s 8082 </dev/null || echo refused); "
             "echo hostaddr $(nc -w 2 %s 8082 </dev/null || echo refused); "
             "echo private $(nc -w 2 %s 8080 </dev/null || echo refused); "
             "echo sandbox $(nc -w 2 %s 9000 </dev/null || echo refused); "
             "echo outside $(nc -w 2 %s 8080 </dev/null)",
             gw, gw, OUTSIDE_HOST, PRIVATE_ADDR, target, OUTSIDE_ADDR);
    out = run_on_bridge(cmd, NULL);
    ck_assert_msg(strstr(out, "host refused\n"), "%s", out);
    ck_assert_msg(strstr(out, "any refused\n"), "%s", out);
    ck_assert_msg(strstr(out, "hostaddr refused\n"), "%s", out);
    ck_assert_msg(strstr(out, "private refused\n"), "%s", out);
    ck_assert_msg(strstr(out, "sandbox refused\n"), "%s", out);
    {
        char want[64];
        snprintf(want, sizeof(want), "outside %s\n", OUTSIDE_HOST);
        if (!strstr(out, want)) {
            /* What the host saw: its firewall's counters, neighbours, conntrack. */
            sh("nft list table inet sandboxd_%s | grep counter; ip neigh show dev %s; "
               "grep -F '%s' /proc/net/nf_conntrack; ip route get %s",
               bridge, bridge, OUTSIDE_ADDR, OUTSIDE_ADDR);
        }
        ck_assert_msg(strstr(out, want), "%s", out);
    }
    free(out);
    ck_assert_msg(sbx_sandbox_destroy(listener, &err) == 0, "%s", err.message);
}
END_TEST

/* With an allowlist a sandbox reaches only those destinations (but the
 * private ranges, still); the allowlist goes with the sandbox. */
START_TEST(test_allowlist)
{
    const char *only_outside[1], *elsewhere[] = {"198.51.100.0/24"};
    struct sbx_netns ns = {-1, -1, -1, 0};
    struct sbx_config cfg;
    char cmd[256], want[64], allowed[32];
    sbx_error err = {0};
    struct sbx_exit ex;
    sbx_sandbox *sb;
    int p[2];

    snprintf(allowed, sizeof(allowed), "%s/32", OUTSIDE_ADDR);
    only_outside[0] = allowed;
    snprintf(cmd, sizeof(cmd), "echo outside $(nc -w 2 %s 8080 </dev/null || echo refused)",
             OUTSIDE_ADDR);
    for (int pass = 0; pass < 2; pass++) {
        char buf[256] = "";
        ssize_t n;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        take_ns(&ns);
        ck_assert_msg(
            sbx_network_allow(&net, ns.addr, pass == 0 ? only_outside : elsewhere, 1, &err) == 0,
            "allow: %s", err.message);
        ck_assert_int_eq(
            sh("nft list chain inet sandboxd_%s allow_%08x >/dev/null 2>&1", bridge, ns.addr), 0);
        cfg = sbx_test_config(&ctx);
        cfg.netns = &ns;
        cfg.argv = (const char *const[]){"sh", "-c", cmd, NULL};
        cfg.stdio[1] = cfg.stdio[2] = p[1];
        ck_assert_msg(sbx_sandbox_create(&cfg, &sb, &err) == 0, "create: %s", err.message);
        close(p[1]);
        for (size_t len = 0;
             len < sizeof(buf) - 1 && (n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0;)
            len += (size_t)n;
        close(p[0]);
        snprintf(want, sizeof(want), "outside %s\n", pass == 0 ? OUTSIDE_HOST : "refused");
        ck_assert_msg(strstr(buf, want), "pass %d: %s", pass, buf);
        ck_assert_int_eq(sbx_sandbox_wait(sb, 10000, &ex, &err), 1);
        ck_assert_int_eq(sbx_network_allow_clear(&net, ns.addr, &err), 0);
        ck_assert_int_ne(
            sh("nft list chain inet sandboxd_%s allow_%08x >/dev/null 2>&1", bridge, ns.addr), 0);
        sbx_netns_close(&ns);
        ck_assert_msg(sbx_sandbox_destroy(sb, &err) == 0, "%s", err.message);
    }
    /* Entries that are not IPv4 CIDRs never reach the firewall. */
    ck_assert_int_eq(
        sbx_network_allow(&net, net.subnet + 9, (const char *const[]){"1.2.3.4/33"}, 1, &err),
        -EINVAL);
    ck_assert_int_eq(sbx_network_allow(&net, net.subnet + 9,
                                       (const char *const[]){"1.2.3.4; flush ruleset"}, 1, &err),
                     -EINVAL);
}
END_TEST

static Suite *network_suite(void)
{
    Suite *s = suite_create("network");
    TCase *tc = tcase_create("network");

    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_eth0_and_lease);
    tcase_add_test(tc, test_egress_is_masqueraded);
    tcase_add_test(tc, test_what_a_sandbox_cannot_reach);
    tcase_add_test(tc, test_allowlist);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    sbx_test_require();
    if (system("command -v nft >/dev/null && command -v ip >/dev/null && "
               "command -v python3 >/dev/null") != 0) {
        printf("SKIP: test-network needs nft, ip and python3 (./quickstart test installs them)\n");
        return 77;
    }
    sr = srunner_create(network_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (sbx_test_final_sweep() > 0 && !failed) {
        printf("FAIL: sandboxes were left behind by passing tests\n");
        failed = 1;
    }
    return failed ? 1 : 0;
}
