/* daemonlib.h — what the tests that drive the real sandboxd share: one
 * daemon per test on its own socket, directories and cgroup parent, libcurl
 * over that socket, and a sweep after the run for what failed tests left.
 *
 * A test program calls dl_init() first in main(), registers dl_setup and
 * dl_teardown as a checked fixture, and calls dl_final_sweep() after
 * srunner_run_all().  The helpers that take `want` or return a created
 * thing assert (Check) on failure; those documented "no assertions" do
 * not, so a thread other than the test's main one may use them. */
#ifndef SBX_TESTS_DAEMONLIB_H
#define SBX_TESTS_DAEMONLIB_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The current test's paths, set by dl_setup(); read them, never write. */
extern char dl_dir[64];      /* the test's own directory */
extern char dl_sock[128];    /* the daemon's unix socket */
extern char dl_run[128];     /* the daemon's --run-dir (monitors name it) */
extern char dl_cgparent[64]; /* the daemon's --cgroup-parent */
extern char dl_bridge[16];   /* the daemon's --bridge (its sandboxes' network) */
extern char dl_subnet[32];   /* and --subnet */
extern pid_t dl_daemon_pid;  /* the running daemon, 0 when none */

/* A response body (NUL-terminated) and what came with it. */
struct dl_buf {
    char *data;
    size_t len;
    double first_at;  /* dl_now_ms() when the first byte arrived */
    char dropped[32]; /* the X-Sandboxd-Dropped header, "" when absent */
};

/* Skips (returns 77, after printing why) unless root and a busybox image
 * are there; makes the session directory /run/sbx-TAG.XXXXXX that every
 * test's directory goes under and initialises libcurl.  Returns 0, 77, or
 * 99 when the session directory cannot be made.  `tag` also names the
 * cgroup parents: sandboxd-TAG-PID. */
int dl_init(const char *tag);
/* A bridge name and subnet of this test program's own. */
void dl_net_names(char bridge[16], char subnet[32]);

/* Check kills a failed test's process without running its teardown; the
 * monitors, in their own sessions, live on.  This starts a daemon on every
 * test directory left in the session (with DIR/sandboxd.json as --config
 * when there is one), which finds those sandboxes again, deletes them and
 * prunes the cgroup parent; then it removes the session and releases
 * libcurl.  Call it once, after the run.  No assertions. */
void dl_final_sweep(void);

/* The fixture: a fresh directory and a daemon on it; the teardown deletes
 * every sandbox, stops the daemon, removes the directory and asserts that
 * no cgroup named like the cgroup parent is left. */
void dl_setup(void);
void dl_teardown(void);

/* Starts sandboxd on the current test's directory, with `--config config`
 * when config is not NULL; returns false when it did not come up.  No
 * assertions.  A config the sweep is to use must be DIR/sandboxd.json. */
bool dl_spawn_daemon(const char *config);
/* dl_spawn_daemon(), asserting that the daemon came up. */
void dl_start_daemon(const char *config);
/* Stops the daemon (SIGTERM) and starts it again with config_json written
 * to DIR/sandboxd.json (where the sweep finds it), asserting it came up. */
void dl_restart_with_config(const char *config_json);
/* Sends sig to the daemon and reaps it; nothing when none runs. */
void dl_stop_daemon(int sig);
/* Deletes every sandbox (so monitors clean up) and stops the daemon with
 * SIGTERM; asserts that the list answers 200.  Nothing when none runs. */
void dl_delete_all_and_stop(void);

double dl_now_ms(void);

/* One request, safe from any thread; returns the status (0 when the
 * transfer failed or timed out) and the body in *ret when ret is not NULL
 * (the caller frees ret->data).  No assertions.  dl_http() waits 60 s. */
long dl_http_t(const char *method, const char *path, const void *body, size_t body_len,
               long timeout_s, struct dl_buf *ret);
long dl_http(const char *method, const char *path, const void *body, size_t body_len,
             struct dl_buf *ret);
/* When not 0, dl_http*() read responses at most this fast (a slow client). */
extern long dl_recv_bytes_per_s;

/* A request with a string body (or NULL) that must answer `want`; returns
 * the body parsed (NULL when not JSON), which the caller decrefs. */
json_t *dl_call(const char *method, const char *path, const char *body, long want);

/* Writes /v1/sandboxes/ID followed by fmt into out; returns out.  No format
 * attribute: "" (the sandbox itself) is a fine fmt. */
const char *dl_sbpath(char *out, size_t n, const char *id, const char *fmt, ...);

/* The string member k of o, "(none)" when it is missing. */
const char *dl_str(json_t *o, const char *k);

/* Creates a sandbox from body (must answer 201); returns its id (free it). */
char *dl_create(const char *body);
/* Waits up to 30 s for sandbox id to finish; returns the wait's answer. */
json_t *dl_wait_finished(const char *id);
/* Starts argv (a JSON array) plus extra JSON fields (or NULL) in sandbox
 * id; returns the process id (free it). */
char *dl_exec_start(const char *id, const char *argv_json, const char *extra);
/* The whole stdout of a process, following it to its end (free .data). */
struct dl_buf dl_proc_stdout(const char *id, const char *pid);
/* Runs `sh -c cmd` in sandbox id; returns its whole stdout (free it). */
char *dl_exec_out(const char *id, const char *cmd);

#endif
