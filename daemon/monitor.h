/* monitor.h — what the files of sandboxd-monitor share (monitor.c, the
 * monitor itself; monitor-zygote.c, the pre-started process that forks
 * monitors).  The protocol with the daemon is in monitor-proto.h. */
#ifndef SBXD_MONITOR_H
#define SBXD_MONITOR_H

#include <jansson.h>
#include <stdbool.h>

#include "sbx.h"

/* What one monitor is started with: its command line, or a zygote request. */
struct monitor_args {
    const char *id, *spec, *run_dir, *state_dir, *log;
    /* The daemon's connection, already open (its first client): the status
     * line goes there instead of to stdout.  -1: none. */
    int client_fd;
    /* Forked by the zygote: already detached from the daemon, no fork. */
    bool from_zygote;
    /* The zygote's pool of pre-made network namespaces (its consumer
     * socket, sbx_netpool_take()), closed once the sandbox exists.  -1:
     * none, the sandbox makes its own. */
    int netpool_fd;
    /* Loopback-only namespaces, for sandboxes that block the network: a
     * pool of their own on a daemon with a network, netpool_fd's (the
     * same fd) on one without.  -1: none. */
    int netpool_lo_fd;
};

/* The zygote's loop on its control socket (monitor-proto.h, "Zygote");
 * argv is main's, for the monitors' command lines.  Returns 0 when the
 * daemon has closed the socket (the zygote is done), -errno when the socket
 * failed, and 1 in a freshly forked child, with *ret filled from the
 * request; the child then runs the monitor and owns *ret_hold, which the
 * strings of *ret point into.  With netpool_size > 0 the zygote keeps that
 * many network namespaces made ahead (sbx_netpool_start()) for its
 * monitors to take, each with eth0 on net's bridge when net is given. */
int zygote_serve(int control_fd, char **argv, const char *run_dir, unsigned netpool_size,
                 const struct sbx_network *net, struct monitor_args *ret, json_t **ret_hold);

/* The monitor's log line (stderr: the --log file once started). */
void mlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
