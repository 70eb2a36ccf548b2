/* main.c — sandboxd: the REST daemon.
 *
 *   sandboxd --socket PATH --state-dir DIR [--run-dir DIR] [--config FILE]
 *            [--listen HOST:PORT --tokens FILE]
 *
 * Foreground, logs to stderr, tells systemd when it is ready (sd_notify
 * protocol), stops on SIGTERM/SIGINT leaving every sandbox running under its
 * monitor: the next start picks them up again. */
#include "sandboxd.h"

#include "sbx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct sbxd *sbxd_global;

static void usage(FILE *f)
{
    fprintf(
        f, "usage: sandboxd [options]\n"
           "Serves the sandboxd REST API (see sandboxd(8)).\n\n"
           "  --socket PATH       unix socket (default /run/sandboxd/sandboxd.sock, mode 0660)\n"
           "  --state-dir DIR     images and sandbox records (default /var/lib/sandboxd)\n"
           "  --run-dir DIR       volatile state (default /run/sandboxd)\n"
           "  --image-store DIR   where images/ and layers/ are (default: the state dir)\n"
           "  --cgroup-parent P   sandboxes' cgroups nest under <own cgroup>/P (default sandboxd)\n"
           "  --config FILE       JSON settings (limits, defaults); see sandboxd(8)\n"
           "  --listen HOST:PORT  also serve TCP; requires --tokens\n"
           "  --tokens FILE       bearer tokens for TCP, one per line\n"
           "  --monitor PATH      the sandboxd-monitor binary\n"
           "  --no-zygote         start each monitor as a new program (slower; see sandboxd(8))\n"
           "  --bridge NAME       the sandboxes' bridge (default sbx0)\n"
           "  --subnet CIDR       the sandboxes' IPv4 subnet (default 10.88.0.0/16)\n"
           "  --no-network        sandboxes get loopback only (no bridge, no NAT)\n"
           "  -h, --help          this help\n");
}

/* sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET. */
static void notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (!path || !*path || strlen(path) >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, strlen(path));
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path))) < 0)
        sbxd_log(NULL, "sd_notify: %s", strerror(errno));
    close(fd);
}

static char **read_tokens(const char *path)
{
    FILE *f = fopen(path, "re");
    char line[512], **tokens;
    size_t n = 0;
    struct stat st;

    if (!f)
        return NULL;
    /* Tokens are secrets: refuse a file others can read. */
    if (fstat(fileno(f), &st) < 0 || (st.st_mode & 077)) {
        sbxd_log(NULL, "%s: must not be readable by group or others (chmod 600)", path);
        fclose(f);
        return NULL;
    }
    tokens = calloc(257, sizeof(char *));
    while (tokens && n < 256 && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strlen(line) >= 16 && line[0] != '#')
            tokens[n++] = strdup(line);
    }
    fclose(f);
    if (tokens && n == 0) {
        sbxd_log(NULL, "%s: no token of at least 16 characters", path);
        free(tokens);
        return NULL;
    }
    return tokens;
}

static int load_config(struct sbxd_config *cfg, const char *path)
{
    json_error_t jerr;
    json_t *c = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr), *v;

    if (!json_is_object(c)) {
        sbxd_log(NULL, "config %s: %s", path, jerr.text);
        json_decref(c);
        return -EINVAL;
    }
#define U(field, key)                                                                              \
    if ((v = json_object_get(c, key))) {                                                           \
        if (!json_is_integer(v) || json_integer_value(v) <= 0) {                                   \
            sbxd_log(NULL, "config %s: `%s` must be a positive integer", path, key);               \
            json_decref(c);                                                                        \
            return -EINVAL;                                                                        \
        }                                                                                          \
        cfg->field = (__typeof__(cfg->field))json_integer_value(v);                                \
    }
    U(max_body, "max_body_bytes");
    U(max_connections, "max_connections");
    U(max_sandboxes, "max_sandboxes");
    U(max_execs, "max_execs_per_sandbox");
    U(output_limit, "output_limit_bytes");
    U(default_memory_bytes, "default_memory_bytes");
    U(default_pids_max, "default_pids_max");
    U(max_upload, "max_upload_bytes");
#undef U
    if ((v = json_object_get(c, "monitor_zygote"))) {
        if (!json_is_boolean(v)) {
            sbxd_log(NULL, "config %s: `monitor_zygote` must be true or false", path);
            json_decref(c);
            return -EINVAL;
        }
        cfg->no_zygote = !json_is_true(v);
    }
    if ((v = json_object_get(c, "pool"))) {
        const char *image;
        json_t *n;

        if (!json_is_object(v)) {
            sbxd_log(NULL, "config %s: `pool` must be an object {\"image\": count}", path);
            json_decref(c);
            return -EINVAL;
        }
        json_object_foreach(v, image, n)
        {
            if (!json_is_integer(n) || json_integer_value(n) < 0 ||
                json_integer_value(n) > SBXD_POOL_MAX) {
                sbxd_log(NULL, "config %s: `pool`: `%s` must be a count from 0 to %d", path, image,
                         SBXD_POOL_MAX);
                json_decref(c);
                return -EINVAL;
            }
        }
        cfg->pool = v;
    }
    if ((v = json_object_get(c, "network"))) {
        json_t *b = json_object_get(v, "bridge"), *s = json_object_get(v, "subnet");
        json_t *dns = json_object_get(v, "dns"), *a;
        size_t i;
        bool ok = json_is_false(v) ||
                  (json_is_object(v) && (!b || json_is_string(b)) && (!s || json_is_string(s)) &&
                   (!dns || (json_is_array(dns) && json_array_size(dns) <= SBX_NETWORK_MAX_DNS)));

        json_array_foreach(dns, i, a)
        {
            struct in_addr in;
            ok &= json_is_string(a) && inet_pton(AF_INET, json_string_value(a), &in) == 1;
        }
        if (!ok) {
            sbxd_log(NULL,
                     "config %s: `network` must be false or {\"bridge\":NAME, "
                     "\"subnet\":\"A.B.C.D/P\", \"dns\":[up to %d IPv4 addresses]}",
                     path, SBX_NETWORK_MAX_DNS);
            json_decref(c);
            return -EINVAL;
        }
        cfg->network = !json_is_false(v);
        if (b)
            cfg->bridge = json_string_value(b);
        if (s)
            cfg->subnet = json_string_value(s);
        if (dns)
            cfg->dns = dns;
    }
    if ((v = json_object_get(c, "tunnel_bind"))) {
        struct in_addr a;
        if (!json_is_string(v) || inet_pton(AF_INET, json_string_value(v), &a) != 1) {
            sbxd_log(NULL, "config %s: `tunnel_bind` must be an IPv4 address", path);
            json_decref(c);
            return -EINVAL;
        }
        cfg->tunnel_bind = json_string_value(v);
    }
    if ((v = json_object_get(c, "host_mounts"))) {
        json_t *e;
        size_t i;
        bool ok = json_is_array(v);
        json_array_foreach(v, i, e)
        {
            const char *p = json_string_value(json_object_get(e, "path"));
            json_t *w = json_object_get(e, "writable");
            ok &= json_is_object(e) && p && p[0] == '/' && (!w || json_is_boolean(w));
        }
        if (!ok) {
            sbxd_log(NULL, "config %s: `host_mounts` must be [{\"path\": ABS, \"writable\": BOOL}]",
                     path);
            json_decref(c);
            return -EINVAL;
        }
        cfg->host_mounts = v;
    }
    if ((v = json_object_get(c, "tls"))) {
        json_t *crt = json_object_get(v, "certificate"), *key = json_object_get(v, "key");
        if (!json_is_object(v) || !json_is_string(crt) || !json_is_string(key) ||
            json_string_value(crt)[0] != '/' || json_string_value(key)[0] != '/' ||
            json_object_size(v) != 2) {
            sbxd_log(NULL, "config %s: `tls` must be {\"certificate\": PATH, \"key\": PATH}", path);
            json_decref(c);
            return -EINVAL;
        }
        cfg->tls_cert = json_string_value(crt);
        cfg->tls_key = json_string_value(key);
    }
    if ((v = json_object_get(c, "netns_pool"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > SBX_NETPOOL_MAX) {
            sbxd_log(NULL, "config %s: `netns_pool` must be an integer from 0 to %d", path,
                     SBX_NETPOOL_MAX);
            json_decref(c);
            return -EINVAL;
        }
        cfg->netns_pool = (unsigned)json_integer_value(v);
    }
    /* Kept: the settings' strings and objects above point into it. */
    cfg->json = c;
    return 0;
}

/* The host's IPv4 resolvers that a sandbox can reach: /etc/resolv.conf's,
 * or systemd-resolved's upstream ones when that names only a local stub. */
static size_t host_dns(uint32_t *out, size_t max)
{
    static const char *const files[] = {"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"};
    size_t n = 0;

    for (size_t f = 0; f < 2 && n == 0; f++) {
        FILE *fp = fopen(files[f], "re");
        char line[512], addr[64];

        while (fp && n < max && fgets(line, sizeof(line), fp)) {
            struct in_addr in;
            if (sscanf(line, " nameserver %63s", addr) == 1 && inet_pton(AF_INET, addr, &in) == 1 &&
                (ntohl(in.s_addr) >> 24) != 127)
                out[n++] = ntohl(in.s_addr);
        }
        if (fp)
            fclose(fp);
    }
    return n;
}

/* The bridge, the firewall, and RUN/resolv.conf for the sandboxes. */
static int network_start(struct sbxd *d)
{
    char text[512], addr[16];
    sbx_error err = {0};
    size_t off = 0, i;
    json_t *a;

    if (!d->cfg.network)
        return 0;
    if (sbx_network_parse(d->cfg.subnet, &d->net, &err) < 0) {
        sbxd_log(NULL, "network: %s", err.message);
        return -1;
    }
    d->net.bridge = d->cfg.bridge;
    d->net.run_dir = d->cfg.run_dir;
    if (d->cfg.dns) {
        json_array_foreach(d->cfg.dns, i, a)
        {
            struct in_addr in;
            if (inet_pton(AF_INET, json_string_value(a), &in) == 1)
                d->net.dns[d->net.n_dns++] = ntohl(in.s_addr);
        }
    } else {
        d->net.n_dns = host_dns(d->net.dns, SBX_NETWORK_MAX_DNS);
    }
    if (d->net.n_dns == 0)
        sbxd_log(NULL, "network: no DNS server a sandbox can reach (set \"dns\" in the config): "
                       "names will not resolve inside");
    for (i = 0; i < d->net.n_dns; i++) {
        struct in_addr in = {.s_addr = htonl(d->net.dns[i])};
        inet_ntop(AF_INET, &in, addr, sizeof(addr));
        off += (size_t)snprintf(text + off, sizeof(text) - off, "nameserver %s\n", addr);
    }
    snprintf(d->resolv_conf, sizeof(d->resolv_conf), "%s/resolv.conf", d->cfg.run_dir);
    {
        int fd = open(d->resolv_conf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || sbxd_write_all(fd, text, off) < 0 || fchmod(fd, 0644) < 0) {
            sbxd_log(NULL, "network: write %s: %s", d->resolv_conf, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        close(fd);
    }
    if (sbx_network_setup(&d->net, &err) < 0) {
        sbxd_log(NULL,
                 "cannot set up the sandboxes' network: %s (--no-network, or \"network\": false "
                 "in the config, gives sandboxes loopback only)",
                 err.message);
        return -1;
    }
    return 0;
}

static void on_signal(uv_signal_t *h, int sig)
{
    struct sbxd *d = h->data;

    sbxd_log(NULL, "signal %d: stopping (sandboxes keep running)", sig);
    notify("STOPPING=1");
    uv_stop(d->loop);
}

static char *default_monitor_path(const char *argv0)
{
    char self[PATH_MAX], *slash, *p;
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 32);

    (void)argv0;
    if (n > 0) {
        self[n] = '\0';
        slash = strrchr(self, '/');
        if (slash) {
            /* libtool builds run from .libs/: look beside and one up. */
            strcpy(slash + 1, "sandboxd-monitor");
            if (access(self, X_OK) == 0)
                return strdup(self);
            *slash = '\0';
            if ((p = strrchr(self, '/')) && !strcmp(p, "/.libs")) {
                strcpy(p + 1, "sandboxd-monitor");
                if (access(self, X_OK) == 0)
                    return strdup(self);
            }
        }
    }
    return strdup("/usr/local/sbin/sandboxd-monitor");
}

#define BRIDGE_MAX_PORTS 1023u /* the kernel's BR_MAX_PORTS, less port 0 */

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},
        {"state-dir", required_argument, NULL, 'S'},
        {"run-dir", required_argument, NULL, 'R'},
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"tokens", required_argument, NULL, 't'},
        {"monitor", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {"image-store", required_argument, NULL, 'I'},
        {"cgroup-parent", required_argument, NULL, 'C'},
        {"no-zygote", no_argument, NULL, 'Z'},
        {"bridge", required_argument, NULL, 'B'},
        {"subnet", required_argument, NULL, 'N'},
        {"no-network", no_argument, NULL, 'O'},
        {NULL, 0, NULL, 0},
    };
    struct sbxd d = {0};
    const char *config = NULL, *tokens_file = NULL, *bridge = NULL, *subnet = NULL;
    bool no_network = false;
    char *monitor = NULL;
    struct sbxd_http_config hc = {0};
    uv_signal_t sigterm, sigint;
    char path[PATH_MAX], spool[PATH_MAX];
    bool no_zygote = false;
    int c, r;

    d.cfg = (struct sbxd_config){
        .socket_path = "/run/sandboxd/sandboxd.sock",
        .state_dir = "/var/lib/sandboxd",
        .run_dir = "/run/sandboxd",
        .max_body = 16 << 20,
        .max_upload = 8ULL << 30,
        .max_connections = 1024,
        .max_sandboxes = 0, /* 2000, or what the network's bridge holds */
        .max_execs = 4096,
        .output_limit = 64 << 20,
        .default_memory_bytes = 0,
        .default_pids_max = 4096,
        .cgroup_parent = "sandboxd",
        .netns_pool = 8,
        .network = true,
        .bridge = "sbx0",
        .subnet = "10.88.0.0/16",
        .tunnel_bind = "127.0.0.1",
    };
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            d.cfg.socket_path = optarg;
            break;
        case 'S':
            d.cfg.state_dir = optarg;
            break;
        case 'R':
            d.cfg.run_dir = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'l':
            d.cfg.listen = optarg;
            break;
        case 't':
            tokens_file = optarg;
            break;
        case 'm':
            monitor = strdup(optarg);
            break;
        case 'I':
            d.cfg.image_store = optarg;
            break;
        case 'C':
            d.cfg.cgroup_parent = optarg;
            break;
        case 'Z':
            no_zygote = true;
            break;
        case 'B':
            bridge = optarg;
            break;
        case 'N':
            subnet = optarg;
            break;
        case 'O':
            no_network = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (config && load_config(&d.cfg, config) < 0)
        return 1;
    /* A connection per monitor and per client: 1000 sandboxes and 100
     * clients need more than the soft 1024 a shell gives (the service unit
     * sets it; started by hand the daemon raises it to the hard limit, as
     * systemd does for a service).  Sandboxes get their own limits. */
    {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    /* The command line wins over the config. */
    if (bridge)
        d.cfg.bridge = bridge;
    if (subnet)
        d.cfg.subnet = subnet;
    if (no_network)
        d.cfg.network = false;
    /* A Linux bridge has at most 1023 ports: each networked sandbox takes
     * one, as do the namespaces made ahead and the pooled sandboxes.  Past
     * that a create would fail deep in the monitor ("Exchange full"); it is
     * refused up front instead, with 429 like any other limit. */
    if (d.cfg.network) {
        unsigned ahead = d.cfg.netns_pool + 8 /* refills in flight, builds */;
        const char *image;
        json_t *n;
        json_object_foreach(d.cfg.pool, image, n) ahead += (unsigned)json_integer_value(n);
        unsigned fits = ahead < BRIDGE_MAX_PORTS ? BRIDGE_MAX_PORTS - ahead : 1;
        if (d.cfg.max_sandboxes > fits)
            sbxd_log(NULL,
                     "max_sandboxes %u is more than the network's bridge holds: %u (1023 ports, "
                     "%u kept for namespaces and sandboxes made ahead)",
                     d.cfg.max_sandboxes, fits, ahead);
        if (!d.cfg.max_sandboxes || d.cfg.max_sandboxes > fits)
            d.cfg.max_sandboxes = fits;
    }
    if (!d.cfg.max_sandboxes)
        d.cfg.max_sandboxes = 2000;
    d.cfg.no_zygote |= no_zygote;
    if (!d.cfg.image_store)
        d.cfg.image_store = d.cfg.state_dir;
    if (d.cfg.listen) {
        if (!tokens_file) {
            sbxd_log(NULL, "--listen needs --tokens: TCP is only served with bearer tokens");
            return 2;
        }
        d.cfg.tokens = read_tokens(tokens_file);
        if (!d.cfg.tokens)
            return 1;
    }
    d.cfg.monitor_path = monitor ? monitor : default_monitor_path(argv[0]);
    if (access(d.cfg.monitor_path, X_OK) < 0) {
        sbxd_log(NULL, "monitor %s: %s", d.cfg.monitor_path, strerror(errno));
        goto fail;
    }
    signal(SIGPIPE, SIG_IGN);
    umask(077);
    snprintf(path, sizeof(path), "%s/monitors", d.cfg.run_dir);
    if ((r = sbxd_mkdir_p(path, 0700)) < 0 || (r = sbxd_mkdir_p(d.cfg.state_dir, 0711)) < 0) {
        sbxd_log(NULL, "cannot make %s or %s: %s", path, d.cfg.state_dir, strerror(-r));
        goto fail;
    }
    /* The certificate before anything is loaded: a bad one keeps the
     * daemon down, and nothing else. */
    if (sbxd_tls_init(&d) < 0)
        goto fail;
    chmod(d.cfg.run_dir, 0711);
    chmod(d.cfg.state_dir, 0711);

    d.loop = uv_default_loop();
    d.started_at = sbxd_now();
    sbxd_global = &d;
    r = sbxd_registry_load(&d);
    if (r < 0) {
        sbxd_log(NULL, "cannot load records from %s: %s", d.cfg.state_dir, strerror(-r));
        return 1;
    }
    sbxd_spares_start(&d);
    sbxd_volumes_start(&d);
    sbxd_images_start(&d);
    if (network_start(&d) < 0)
        return 1;
    hc.unix_path = d.cfg.socket_path;
    hc.tcp_listen = d.cfg.listen;
    hc.tokens = (const char *const *)d.cfg.tokens;
    hc.max_body = d.cfg.max_body;
    hc.max_connections = d.cfg.max_connections;
    /* Uploads that go to a file: on the state dir's file system, so that
     * a handler can rename one into place; what a stop left goes. */
    snprintf(spool, sizeof(spool), "%s/uploads", d.cfg.state_dir);
    (void)sbxd_rm_rf(spool);
    (void)sbxd_mkdir_p(spool, 0700);
    hc.spooled = sbxd_images_spooled;
    hc.spool_dir = spool;
    hc.max_spool = d.cfg.max_upload;
    {
        char dir[PATH_MAX], *slash;
        snprintf(dir, sizeof(dir), "%s", d.cfg.socket_path);
        if ((slash = strrchr(dir, '/')) && slash != dir) {
            *slash = '\0';
            sbxd_mkdir_p(dir, 0711);
        }
    }
    r = sbxd_http_start(d.loop, &hc, sbxd_api_handle, &d, &d.http);
    if (r < 0) {
        sbxd_log(NULL, "cannot serve on %s: %s", d.cfg.socket_path, strerror(-r));
        return 1;
    }
    /* Monitors start from the zygote once it runs, and as programs until
     * then (or always, without it). */
    if (!d.cfg.no_zygote && (r = sbxd_zygote_start(&d)) < 0)
        sbxd_log(NULL, "monitor zygote: %s: monitors start as programs", strerror(-r));
    sbxd_pool_start(&d);
    uv_signal_init(d.loop, &sigterm);
    uv_signal_init(d.loop, &sigint);
    sigterm.data = sigint.data = &d;
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    sbxd_log(NULL, "serving on %s%s%s (state %s, %u sandboxes running, cgroup %s)",
             d.cfg.socket_path, d.cfg.listen ? " and " : "", d.cfg.listen ? d.cfg.listen : "",
             d.cfg.state_dir, d.n_running, sbx_cgroup_mode());
    notify("READY=1");
    uv_run(d.loop, UV_RUN_DEFAULT);
    /* Pooled sandboxes are nobody's: they go with the daemon. */
    sbxd_pool_stop(&d);
    sbxd_zygote_stop(&d);
    /* With no sandbox left, leave no empty cgroup parent behind either, nor
     * the bridge and the firewall. */
    if (d.n_running == 0) {
        (void)sbx_cgroup_prune(d.cfg.cgroup_parent, NULL);
        if (d.cfg.network)
            (void)sbx_network_teardown(&d.net, NULL);
    }
    /* Let go of everything, so that a leak checker sees only real leaks:
     * the sandboxes first (their pending requests are answered while the
     * HTTP layer still holds them; the monitors run on), then HTTP. */
    while (d.sandboxes)
        sbxd_sandbox_forget(&d, d.sandboxes);
    sbxd_index_free(&d.sandbox_index);
    sbxd_http_stop(d.http);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    /* Handles close (and pool work ends) within a few turns of the loop. */
    for (int i = 0; i < 200 && uv_run(d.loop, UV_RUN_NOWAIT); i++)
        usleep(5000);
    (void)uv_loop_close(d.loop);
    json_decref(d.apps);
    json_decref(d.cfg.json);
    for (char **t = d.cfg.tokens; t && *t; t++)
        free(*t);
    free(d.cfg.tokens);
    free((char *)d.cfg.monitor_path);
    sbxd_tls_free(&d);
    sbxd_log(NULL, "stopped");
    return 0;
fail:
    /* (nothing else is loaded yet) */
    json_decref(d.cfg.json);
    for (char **t = d.cfg.tokens; t && *t; t++)
        free(*t);
    free(d.cfg.tokens);
    free((char *)d.cfg.monitor_path);
    sbxd_tls_free(&d);
    return 1;
}
