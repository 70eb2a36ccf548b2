/* network.c — the sandboxes' network: a bridge, a veth per sandbox, NAT.
 *
 *   host                                        sandbox's network namespace
 *   ┌───────────────────────────────┐            ┌──────────────────────────┐
 *   │ bridge (e.g. sbx0) GATEWAY/P  │◀── veth ──▶│ eth0 ADDR/P, default via │
 *   │ port sbxXXXXXXXX, isolated    │            │ GATEWAY; lo              │
 *   └───────────────────────────────┘            └──────────────────────────┘
 *   nftables table inet sandboxd_BRIDGE: masquerade to the outside; nothing
 *   from a sandbox to the host itself, to the host's private networks or to
 *   another sandbox; nothing from outside into a sandbox.
 *
 * The bridge and the firewall are set up once (sbx_network_setup(), by the
 * daemon at its start); each veth is made with its namespace, ahead of
 * time, by the network namespace pool's helper (netpool.c), so that a
 * sandbox's start pays nothing for its network.  Links, addresses and
 * routes are made over rtnetlink with libmnl; the firewall is nft's own
 * language run through libnftables, never hand-built netlink.
 *
 * Addresses are leased in RUN/leases: one file per address (its dotted
 * name), made O_EXCL by the helper when it makes the veth; a sandbox's
 * create writes its id into it, its destroy removes it.  Leases are handed
 * out in order from a random start, so that an address comes back only
 * after the subnet has gone round: no stale neighbour entry or connection
 * can point at a sandbox that has just started.
 *
 * Isolation between sandboxes is the bridge's: every sandbox's port is
 * "isolated", and isolated ports do not forward to each other; what is
 * routed through the host between two sandboxes is dropped by the forward
 * chain (into the bridge only what answers a sandbox's own connection). */
#include "internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <dlfcn.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

/* ---- rtnetlink ---- */

struct nl {
    struct mnl_socket *sock;
    unsigned portid, seq;
    char buf[8192];
};

static int nl_open(struct nl *nl, sbx_error *err)
{
    nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl->sock)
        return sbx__error(err, errno, "open an rtnetlink socket");
    if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
        int e = errno;
        mnl_socket_close(nl->sock);
        nl->sock = NULL;
        return sbx__error(err, e, "bind the rtnetlink socket");
    }
    nl->portid = mnl_socket_get_portid(nl->sock);
    nl->seq = (unsigned)time(NULL);
    return 0;
}

static void nl_close(struct nl *nl)
{
    if (nl->sock)
        mnl_socket_close(nl->sock);
    nl->sock = NULL;
}

static struct nlmsghdr *nl_msg(struct nl *nl, uint16_t type, uint16_t flags)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(nl->buf);

    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    nlh->nlmsg_seq = ++nl->seq;
    return nlh;
}

/* Sends one request and waits for its acknowledgement. */
static int nl_talk(struct nl *nl, struct nlmsghdr *nlh, const char *what, sbx_error *err)
{
    char rbuf[8192];
    ssize_t n;
    int r;

    if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
        return sbx__error(err, errno, "%s: send", what);
    for (;;) {
        n = mnl_socket_recvfrom(nl->sock, rbuf, sizeof(rbuf));
        if (n < 0)
            return sbx__error(err, errno, "%s: receive", what);
        r = mnl_cb_run(rbuf, (size_t)n, nlh->nlmsg_seq, nl->portid, NULL, NULL);
        if (r < 0)
            return sbx__error(err, errno, "%s", what);
        if (r == MNL_CB_STOP)
            return 0;
    }
}

static struct ifinfomsg *put_ifinfo(struct nlmsghdr *nlh, int index, unsigned flags,
                                    unsigned change)
{
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));

    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = index;
    ifi->ifi_flags = flags;
    ifi->ifi_change = change;
    return ifi;
}

static int link_up(struct nl *nl, int index, int master, const char *what, sbx_error *err)
{
    struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWLINK, 0);

    put_ifinfo(nlh, index, IFF_UP, IFF_UP);
    if (master > 0)
        mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
    return nl_talk(nl, nlh, what, err);
}

static int add_address(struct nl *nl, int index, uint32_t addr, unsigned prefix, const char *what,
                       sbx_error *err)
{
    struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    uint32_t a = htonl(addr);

    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = (unsigned char)prefix;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = (unsigned)index;
    mnl_attr_put(nlh, IFA_LOCAL, sizeof(a), &a);
    mnl_attr_put(nlh, IFA_ADDRESS, sizeof(a), &a);
    return nl_talk(nl, nlh, what, err);
}

/* ---- addresses ---- */

static uint32_t gateway(const struct sbx_network *net)
{
    return net->subnet + 1;
}

static uint32_t broadcast(const struct sbx_network *net)
{
    return net->subnet | ~(net->prefix == 0 ? 0 : UINT32_MAX << (32 - net->prefix));
}

void sbx__addr_format(uint32_t addr, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255);
}

static uint32_t mask_of(unsigned prefix)
{
    return prefix == 0 ? 0 : UINT32_MAX << (32 - prefix);
}

/* "A.B.C.D/P" (P 0..32) into *ret_net (host bits cleared) and *ret_prefix;
 * the address as given in *ret_addr. */
static int cidr_parse(const char *cidr, uint32_t *ret_net, unsigned *ret_prefix, uint32_t *ret_addr)
{
    char buf[32], *slash, *end;
    struct in_addr a;
    long prefix;

    if (!cidr || strlen(cidr) >= sizeof(buf))
        return -EINVAL;
    snprintf(buf, sizeof(buf), "%s", cidr);
    slash = strchr(buf, '/');
    if (!slash)
        return -EINVAL;
    *slash = '\0';
    errno = 0;
    prefix = strtol(slash + 1, &end, 10);
    if (inet_pton(AF_INET, buf, &a) != 1 || errno || *end || end == slash + 1 || prefix < 0 ||
        prefix > 32)
        return -EINVAL;
    *ret_prefix = (unsigned)prefix;
    *ret_addr = ntohl(a.s_addr);
    *ret_net = *ret_addr & mask_of((unsigned)prefix);
    return 0;
}

int sbx__cidr_parse(const char *cidr, struct sbx_network *ret)
{
    uint32_t addr;

    return cidr_parse(cidr, &ret->subnet, &ret->prefix, &addr);
}

int sbx_network_parse(const char *cidr, struct sbx_network *net, sbx_error *err)
{
    uint32_t addr;

    if (cidr_parse(cidr, &net->subnet, &net->prefix, &addr) < 0 || net->prefix < 8 ||
        net->prefix > 28)
        return sbx__error(err, EINVAL, "subnet `%s`: an IPv4 A.B.C.D/P with P from 8 to 28",
                          cidr ? cidr : "(null)");
    if (net->subnet != addr)
        return sbx__error(err, EINVAL, "subnet `%s` has host bits set", cidr);
    return 0;
}

static void lease_path(const char *run_dir, uint32_t addr, char *out, size_t n)
{
    char a[16];

    sbx__addr_format(addr, a);
    snprintf(out, n, "%s/leases/%s", run_dir, a);
}

/* Takes the next free address (a new lease file), going round the subnet.
 * The cursor is shared by every process that leases (the pool's helper,
 * monitors making a namespace themselves): RUN/leases/.next, under an
 * flock.  An address thus comes back only after the whole subnet has been
 * handed out, long after its last holder's veth has gone (the kernel
 * removes it in the background, with the namespace). */
static int lease_take(const struct sbx_network *net, uint32_t *ret, sbx_error *err)
{
    uint32_t first = net->subnet + 2, last = broadcast(net) - 1, n = last - first + 1, next = 0;
    char path[PATH_MAX], buf[16] = "";
    _cleanup_close_ int cur = -1;
    ssize_t len;
    int r = -EADDRNOTAVAIL;

    snprintf(path, sizeof(path), "%s/leases", net->run_dir);
    if (sbx__mkdir_p(path, 0700, err) < 0)
        return -errno;
    snprintf(path, sizeof(path), "%s/leases/.next", net->run_dir);
    cur = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (cur < 0 || flock(cur, LOCK_EX) < 0)
        return sbx__error(err, errno, "lock `%s`", path);
    len = pread(cur, buf, sizeof(buf) - 1, 0);
    if (len > 0)
        next = (uint32_t)strtoul(buf, NULL, 10);
    if (next < first || next > last) {
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
            rnd = (uint32_t)time(NULL);
        next = first + rnd % n;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t addr = next;
        int fd;

        next = next == last ? first : next + 1;
        lease_path(net->run_dir, addr, path, sizeof(path));
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
            *ret = addr;
            r = 0;
            break;
        }
        if (errno != EEXIST) {
            r = sbx__error(err, errno, "lease `%s`", path);
            break;
        }
    }
    len = snprintf(buf, sizeof(buf), "%u", next);
    if (pwrite(cur, buf, (size_t)len, 0) != len || ftruncate(cur, len) < 0) {
        /* A cursor lost is a random start next time: no harm. */
    }
    if (r == -EADDRNOTAVAIL)
        return sbx__error(err, EADDRNOTAVAIL, "no free address in the sandboxes' subnet");
    return r;
}

void sbx__lease_release(const char *run_dir, uint32_t addr)
{
    char path[PATH_MAX];

    lease_path(run_dir, addr, path, sizeof(path));
    (void)unlink(path);
}

int sbx__lease_claim(const char *run_dir, uint32_t addr, const char *id)
{
    char path[PATH_MAX];
    int fd, r = 0;

    lease_path(run_dir, addr, path, sizeof(path));
    fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    if (write(fd, id, strlen(id)) != (ssize_t)strlen(id))
        r = -EIO;
    close(fd);
    return r;
}

void sbx__leases_release_owned(const char *run_dir, const char *id)
{
    char path[PATH_MAX];
    DIR *d;
    struct dirent *e;

    snprintf(path, sizeof(path), "%s/leases", run_dir);
    d = opendir(path);
    while (d && (e = readdir(d))) {
        char owner[80];
        int n;

        if (e->d_name[0] == '.')
            continue;
        n = sbx__read_file_at(dirfd(d), e->d_name, owner, sizeof(owner), NULL);
        if (n > 0 && (size_t)n == strlen(id) && !memcmp(owner, id, (size_t)n))
            (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d)
        closedir(d);
}

/* Leases nobody claimed: made by a pool that is gone (a new one is
 * starting), their namespaces gone with it. */
static void leases_clear_unclaimed(const struct sbx_network *net)
{
    char path[PATH_MAX];
    DIR *d;
    struct dirent *e;

    snprintf(path, sizeof(path), "%s/leases", net->run_dir);
    d = opendir(path);
    while (d && (e = readdir(d))) {
        struct stat st;

        if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && st.st_size == 0)
            (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d)
        closedir(d);
}

/* ---- a sandbox's veth ---- */

static void allow_record_path(const char *run_dir, uint32_t addr, char *out, size_t n);

int sbx__veth_attach(const struct sbx_network *net, int host_netns, uint32_t *ret_addr,
                     sbx_error *err)
{
    _cleanup_close_ int own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    char host_name[IFNAMSIZ];
    struct nl nl = {0};
    struct nlmsghdr *nlh;
    struct nlattr *info, *data, *peer;
    struct rtmsg *rtm;
    uint32_t addr = 0, gw;
    int eth0, host_if, bridge, r;

    if (own < 0)
        return sbx__error(err, errno, "open the new network namespace");
    r = nl_open(&nl, err);
    if (r < 0)
        return r;
    /* A veth of the address's last holder may still be there, its
     * namespace being freed by the kernel: then the next address. */
    for (int attempt = 0;; attempt++) {
        r = lease_take(net, &addr, err);
        if (r < 0) {
            nl_close(&nl);
            return r;
        }
        /* An allowlist a killed monitor never cleared must not bind the
         * address's next sandbox. */
        {
            char path[PATH_MAX];
            allow_record_path(net->run_dir, addr, path, sizeof(path));
            if (access(path, F_OK) == 0)
                (void)sbx_network_allow_clear(net, addr, NULL);
        }
        snprintf(host_name, sizeof(host_name), "sbx%08x", addr);

        /* eth0 here, its peer in the host's namespace. */
        nlh = nl_msg(&nl, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        put_ifinfo(nlh, 0, 0, 0);
        mnl_attr_put_strz(nlh, IFLA_IFNAME, "eth0");
        info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
        mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
        data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
        peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
        put_ifinfo(nlh, 0, 0, 0);
        mnl_attr_put_strz(nlh, IFLA_IFNAME, host_name);
        mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)host_netns);
        mnl_attr_nest_end(nlh, peer);
        mnl_attr_nest_end(nlh, data);
        mnl_attr_nest_end(nlh, info);
        r = nl_talk(&nl, nlh, "make the sandbox's veth", err);
        if (r == -EEXIST && attempt < 16) {
            sbx__lease_release(net->run_dir, addr);
            continue;
        }
        if (r < 0)
            goto fail;
        break;
    }
    eth0 = (int)if_nametoindex("eth0");
    gw = gateway(net);
    if (eth0 <= 0) {
        r = sbx__error(err, errno, "find eth0");
        goto fail;
    }
    if ((r = add_address(&nl, eth0, addr, net->prefix, "address eth0", err)) < 0 ||
        (r = link_up(&nl, eth0, 0, "bring eth0 up", err)) < 0)
        goto fail;
    nlh = nl_msg(&nl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
    rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
    rtm->rtm_family = AF_INET;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_STATIC;
    rtm->rtm_scope = RT_SCOPE_UNIVERSE;
    rtm->rtm_type = RTN_UNICAST;
    {
        uint32_t g = htonl(gw);
        mnl_attr_put(nlh, RTA_GATEWAY, sizeof(g), &g);
    }
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)eth0);
    if ((r = nl_talk(&nl, nlh, "route via the bridge", err)) < 0)
        goto fail;
    nl_close(&nl);

    /* The host's end: on the bridge, isolated from the other sandboxes'. */
    if (setns(host_netns, CLONE_NEWNET) < 0) {
        r = sbx__error(err, errno, "enter the host's network namespace");
        goto fail;
    }
    r = nl_open(&nl, err);
    host_if = (int)if_nametoindex(host_name);
    bridge = (int)if_nametoindex(net->bridge);
    if (r >= 0 && (host_if <= 0 || bridge <= 0))
        r = sbx__error(err, ENODEV, "find `%s` or the bridge `%s`", host_name, net->bridge);
    if (r >= 0)
        r = link_up(&nl, host_if, bridge, "put the veth on the bridge", err);
    if (r >= 0) {
        /* An earlier holder of the address may be known to the host still:
         * its stale neighbour entry would send the replies to a dead MAC. */
        struct ndmsg *nd;
        uint32_t a = htonl(addr);
        sbx_error ignored;

        nlh = nl_msg(&nl, RTM_DELNEIGH, 0);
        nd = mnl_nlmsg_put_extra_header(nlh, sizeof(*nd));
        nd->ndm_family = AF_INET;
        nd->ndm_ifindex = bridge;
        mnl_attr_put(nlh, NDA_DST, sizeof(a), &a);
        (void)nl_talk(&nl, nlh, "forget the address's old neighbour", &ignored);
    }
    if (r >= 0) {
        nlh = nl_msg(&nl, RTM_NEWLINK, 0);
        put_ifinfo(nlh, host_if, 0, 0);
        info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
        mnl_attr_put_strz(nlh, IFLA_INFO_SLAVE_KIND, "bridge");
        data = mnl_attr_nest_start(nlh, IFLA_INFO_SLAVE_DATA);
        mnl_attr_put_u8(nlh, IFLA_BRPORT_ISOLATED, 1);
        mnl_attr_nest_end(nlh, data);
        mnl_attr_nest_end(nlh, info);
        r = nl_talk(&nl, nlh, "isolate the bridge port", err);
    }
    nl_close(&nl);
    /* Back where the caller was. */
    if (setns(own, CLONE_NEWNET) < 0 && r >= 0)
        r = sbx__error(err, errno, "return to the sandbox's network namespace");
    if (r < 0)
        goto fail;
    *ret_addr = addr;
    return 0;

fail:
    nl_close(&nl);
    sbx__lease_release(net->run_dir, addr);
    return r;
}

/* ---- the bridge and the firewall ---- */

/* libnftables (with libnftnl and libxtables behind it) is loaded when the
 * firewall is first touched, not linked: the runtime is in every monitor
 * and, through fork, in every sandbox's init, and most never touch it. */
static struct {
#define NFT_FUNCS(X)                                                                               \
    X(nft_ctx_new)                                                                                 \
    X(nft_ctx_free)                                                                                \
    X(nft_ctx_buffer_output)                                                                       \
    X(nft_ctx_buffer_error)                                                                        \
    X(nft_ctx_get_error_buffer)                                                                    \
    X(nft_run_cmd_from_buffer)
#define NFT_POINTER(name) __typeof__(name) *name;
    NFT_FUNCS(NFT_POINTER)
#undef NFT_POINTER
    char error[256];
} nftl;
static pthread_once_t nftl_once = PTHREAD_ONCE_INIT;

static void nftl_load(void)
{
    void *h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);

    if (!h)
        h = dlopen("libnftables.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(nftl.error, sizeof(nftl.error), "load libnftables: %s", dlerror());
        return;
    }
#define NFT_SYM(name)                                                                              \
    if (!(nftl.name = (__typeof__(name) *)dlsym(h, #name))) {                                      \
        snprintf(nftl.error, sizeof(nftl.error), "libnftables has no %s", #name);                  \
        return;                                                                                    \
    }
    NFT_FUNCS(NFT_SYM)
#undef NFT_SYM
}

static int nft_run(const char *text, sbx_error *err)
{
    struct nft_ctx *ctx;
    int r;

    pthread_once(&nftl_once, nftl_load);
    if (nftl.error[0])
        return sbx__error(err, ENOSYS, "nftables: %s", nftl.error);
    ctx = nftl.nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx)
        return sbx__error(err, ENOMEM, "libnftables context");
    nftl.nft_ctx_buffer_output(ctx);
    nftl.nft_ctx_buffer_error(ctx);
    r = nftl.nft_run_cmd_from_buffer(ctx, text);
    if (r != 0) {
        const char *msg = nftl.nft_ctx_get_error_buffer(ctx);
        r = sbx__error(err, EINVAL, "nftables: %.400s", msg && *msg ? msg : "failed");
    }
    nftl.nft_ctx_free(ctx);
    return r;
}

/* The firewall: one table of our own.  Its base chains and the private
 * set are rewritten whole (one transaction); the sandboxes' allowlists
 * (the map and its chains) are kept: they belong to running sandboxes. */
static int firewall(const struct sbx_network *net, sbx_error *err)
{
    char sub[16], dns[256] = "", dns_rules[768] = "", text[6144];
    size_t off = 0;

    sbx__addr_format(net->subnet, sub);
    for (size_t i = 0; i < net->n_dns && i < SBX_NETWORK_MAX_DNS; i++) {
        char a[16];
        sbx__addr_format(net->dns[i], a);
        off += (size_t)snprintf(dns + off, sizeof(dns) - off, "%s%s", i ? ", " : "", a);
    }
    /* The DNS servers may sit in a private range (a host's resolver often
     * does): those are reachable on port 53, allowlist or not. */
    if (net->n_dns)
        snprintf(dns_rules, sizeof(dns_rules),
                 "add rule inet sandboxd_%1$s forward iifname \"%1$s\" ip daddr { %2$s } "
                 "udp dport 53 accept\n"
                 "add rule inet sandboxd_%1$s forward iifname \"%1$s\" ip daddr { %2$s } "
                 "tcp dport 53 accept\n",
                 net->bridge, dns);
    snprintf(text, sizeof(text),
             "table inet sandboxd_%1$s {\n"
             "  set private { type ipv4_addr; flags interval; }\n"
             "  map allowlists { type ipv4_addr : verdict; }\n"
             "  chain input { type filter hook input priority filter - 10; policy accept; }\n"
             "  chain forward { type filter hook forward priority filter - 10; policy accept; }\n"
             "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }\n"
             "}\n"
             "flush set inet sandboxd_%1$s private\n"
             "flush chain inet sandboxd_%1$s input\n"
             "flush chain inet sandboxd_%1$s forward\n"
             "flush chain inet sandboxd_%1$s postrouting\n"
             /* Private and special ranges: the host's other networks. */
             "add element inet sandboxd_%1$s private { 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, "
             "127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 224.0.0.0/3 }\n"
             /* Nothing on the host from a sandbox: not the daemon's TCP
              * listener, not anything bound on the bridge's address. */
             "add rule inet sandboxd_%1$s input iifname \"%1$s\" ct state established,related "
             "accept\n"
             "add rule inet sandboxd_%1$s input iifname \"%1$s\" counter drop\n"
             /* Into a sandbox only what answers its own connections. */
             "add rule inet sandboxd_%1$s forward oifname \"%1$s\" ct state established,related "
             "accept\n"
             "add rule inet sandboxd_%1$s forward oifname \"%1$s\" counter drop\n"
             "add rule inet sandboxd_%1$s forward iifname \"%1$s\" meta nfproto ipv6 counter drop\n"
             "add rule inet sandboxd_%1$s forward iifname \"%1$s\" ip saddr != %2$s/%3$u counter "
             "drop\n"
             "%4$s"
             "add rule inet sandboxd_%1$s forward iifname \"%1$s\" ip daddr @private counter drop\n"
             /* A sandbox with an allowlist: only there (sbx_network_allow). */
             "add rule inet sandboxd_%1$s forward iifname \"%1$s\" ip saddr vmap @allowlists\n"
             "add rule inet sandboxd_%1$s postrouting ip saddr %2$s/%3$u oifname != \"%1$s\" "
             "counter masquerade\n",
             net->bridge, sub, net->prefix, dns_rules);
    return nft_run(text, err);
}

/* RUN/allowlists/ADDR: a sandbox's allowlist is in the firewall. */
static void allow_record_path(const char *run_dir, uint32_t addr, char *out, size_t n)
{
    char a[16];

    sbx__addr_format(addr, a);
    snprintf(out, n, "%s/allowlists/%s", run_dir, a);
}

int sbx_network_allow(const struct sbx_network *net, uint32_t addr, const char *const *cidrs,
                      size_t n, sbx_error *err)
{
    char a[16], path[PATH_MAX], set[4096] = "", text[8192];
    size_t off = 0;
    int fd, r;

    sbx__addr_format(addr, a);
    for (size_t i = 0; i < n; i++) {
        struct sbx_network c;
        char cidr[64];

        /* Only what parses goes into the rule: A.B.C.D or A.B.C.D/P. */
        snprintf(cidr, sizeof(cidr), "%s%s", cidrs[i], strchr(cidrs[i], '/') ? "" : "/32");
        if (strlen(cidrs[i]) > 18 || sbx__cidr_parse(cidr, &c) < 0)
            return sbx__error(err, EINVAL, "allowlist entry `%s` is not A.B.C.D[/P]", cidrs[i]);
        sbx__addr_format(c.subnet, cidr);
        off += (size_t)snprintf(set + off, sizeof(set) - off, "%s%s/%u", i ? ", " : "", cidr,
                                c.prefix);
        if (off >= sizeof(set))
            return sbx__error(err, E2BIG, "allowlist of %zu entries", n);
    }
    snprintf(path, sizeof(path), "%s/allowlists", net->run_dir);
    if ((r = sbx__mkdir_p(path, 0700, err)) < 0)
        return r;
    allow_record_path(net->run_dir, addr, path, sizeof(path));
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return sbx__error(err, errno, "record `%s`", path);
    close(fd);
    {
        /* The allowed destinations go back to the forward chain (and on to
         * its accept); everything else stops here.  One transaction. */
        char rule[4400] = "";
        if (n)
            snprintf(rule, sizeof(rule),
                     "add rule inet sandboxd_%s allow_%08x ip daddr { %s } return\n", net->bridge,
                     addr, set);
        snprintf(text, sizeof(text),
                 "add chain inet sandboxd_%1$s allow_%2$08x\n"
                 "flush chain inet sandboxd_%1$s allow_%2$08x\n"
                 "%3$s"
                 "add rule inet sandboxd_%1$s allow_%2$08x counter drop\n"
                 "add element inet sandboxd_%1$s allowlists { %4$s : jump allow_%2$08x }\n",
                 net->bridge, addr, rule, a);
    }
    r = nft_run(text, err);
    if (r < 0)
        (void)unlink(path);
    return r;
}

int sbx_network_allow_clear(const struct sbx_network *net, uint32_t addr, sbx_error *err)
{
    char a[16], path[PATH_MAX], text[512];
    int r;

    allow_record_path(net->run_dir, addr, path, sizeof(path));
    if (access(path, F_OK) < 0)
        return 0;
    sbx__addr_format(addr, a);
    /* The element first: the chain cannot go while the map jumps to it.
     * Each on its own: either may be gone already. */
    snprintf(text, sizeof(text), "delete element inet sandboxd_%s allowlists { %s }\n", net->bridge,
             a);
    (void)nft_run(text, NULL);
    snprintf(text, sizeof(text), "delete chain inet sandboxd_%s allow_%08x\n", net->bridge, addr);
    r = nft_run(text, err);
    /* Gone either way: a table without it (a new daemon's) has nothing to remove. */
    (void)unlink(path);
    return r == -EINVAL ? 0 : r;
}

/* Allowlists of sandboxes that are gone (their leases are not claimed):
 * a monitor killed outright never cleared its own. */
static void allowlists_reconcile(const struct sbx_network *net)
{
    char path[PATH_MAX];
    DIR *d;
    struct dirent *e;

    snprintf(path, sizeof(path), "%s/allowlists", net->run_dir);
    d = opendir(path);
    while (d && (e = readdir(d))) {
        struct sbx_network c;
        char lease[PATH_MAX], cidr[32];
        struct stat st;

        if (e->d_name[0] == '.')
            continue;
        snprintf(cidr, sizeof(cidr), "%s/32", e->d_name);
        if (sbx__cidr_parse(cidr, &c) < 0)
            continue;
        lease_path(net->run_dir, c.subnet, lease, sizeof(lease));
        if (stat(lease, &st) == 0 && st.st_size > 0)
            continue; /* claimed: its sandbox runs */
        (void)sbx_network_allow_clear(net, c.subnet, NULL);
    }
    if (d)
        closedir(d);
}

int sbx_network_setup(const struct sbx_network *net, sbx_error *err)
{
    struct nl nl = {0};
    struct nlmsghdr *nlh;
    struct nlattr *info;
    int bridge, r;

    if (!net->bridge || !*net->bridge || strlen(net->bridge) > 12 ||
        strspn(net->bridge, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(net->bridge))
        return sbx__error(err, EINVAL, "bridge name `%s`: 1 to 12 of [a-z0-9]",
                          net->bridge ? net->bridge : "");
    r = nl_open(&nl, err);
    if (r < 0)
        return r;
    bridge = (int)if_nametoindex(net->bridge);
    if (bridge <= 0) {
        nlh = nl_msg(&nl, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        put_ifinfo(nlh, 0, 0, 0);
        mnl_attr_put_strz(nlh, IFLA_IFNAME, net->bridge);
        info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
        mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
        mnl_attr_nest_end(nlh, info);
        r = nl_talk(&nl, nlh, "make the bridge", err);
        bridge = r < 0 ? -1 : (int)if_nametoindex(net->bridge);
        if (r >= 0 && bridge <= 0)
            r = sbx__error(err, ENODEV, "find the bridge `%s`", net->bridge);
    }
    if (r >= 0) {
        /* A bridge without an address of its own takes its lowest port's,
         * so every veth that comes or goes could change the gateway's MAC
         * under the sandboxes' feet (their neighbour entries then point at
         * nothing until they expire): give it a fixed one, locally
         * administered, from its name and subnet. */
        unsigned char mac[6] = {0x02, 0x5b};
        uint32_t h = 2166136261u;

        for (const char *c = net->bridge; *c; c++)
            h = (h ^ (unsigned char)*c) * 16777619u;
        h = (h ^ net->subnet) * 16777619u;
        memcpy(mac + 2, &h, 4);
        nlh = nl_msg(&nl, RTM_NEWLINK, 0);
        put_ifinfo(nlh, bridge, 0, 0);
        mnl_attr_put(nlh, IFLA_ADDRESS, sizeof(mac), mac);
        r = nl_talk(&nl, nlh, "set the bridge's MAC address", err);
    }
    if (r >= 0)
        r = add_address(&nl, bridge, gateway(net), net->prefix, "address the bridge", err);
    if (r >= 0)
        r = link_up(&nl, bridge, 0, "bring the bridge up", err);
    nl_close(&nl);
    if (r < 0)
        return r;
    /* Routing between the bridge and the host's other interfaces. */
    r = sbx__write_file("/proc/sys/net/ipv4/ip_forward", "1", err);
    if (r < 0)
        return r;
    r = firewall(net, err);
    if (r < 0)
        return r;
    leases_clear_unclaimed(net);
    allowlists_reconcile(net);
    return 0;
}

int sbx_network_teardown(const struct sbx_network *net, sbx_error *err)
{
    struct nl nl = {0};
    struct nlmsghdr *nlh;
    char text[256];
    int bridge, r;

    snprintf(text, sizeof(text), "table inet sandboxd_%1$s\ndelete table inet sandboxd_%1$s\n",
             net->bridge);
    r = nft_run(text, err);
    bridge = (int)if_nametoindex(net->bridge);
    if (bridge > 0 && nl_open(&nl, err) == 0) {
        nlh = nl_msg(&nl, RTM_DELLINK, 0);
        put_ifinfo(nlh, bridge, 0, 0);
        if (nl_talk(&nl, nlh, "remove the bridge", err) < 0)
            r = -errno;
        nl_close(&nl);
    }
    return r;
}
