/* cli.h — what the sbx commands share.
 *
 * sbx is a client of the REST API (../shared/API.md) and nothing else: it
 * never touches the daemon's files.  One file per command (run.c, exec.c,
 * ...), plus:
 *   client.c   libcurl and jansson: one request, errors as one line
 *   resolve.c  SANDBOX arguments: an id, a unique id prefix, or app/name
 *   attach.c   a process's streams, stdin, window size, signals, returncode
 *   term.c     raw mode and the signals that must restore the terminal
 *   format.c   tables, times, sizes, JSON output
 *   main.c     global options and the command table
 *
 * Conventions (../shared/STYLE.md): fallible functions return >= 0 or a
 * negative errno and fill a struct cli_error last; only a command prints,
 * once, where it handles the error. */
#ifndef SBX_CLI_H
#define SBX_CLI_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Exit statuses of sbx itself.  run, exec and shell pass the process's own
 * returncode through, so their own failures use Docker's 125 (and 126/127
 * when the command cannot be run or is not found). */
#define CLI_EXIT_FAILURE     1
#define CLI_EXIT_USAGE       2
#define CLI_EXIT_RUN_FAILURE 125
#define CLI_EXIT_CANNOT_RUN  126
#define CLI_EXIT_NOT_FOUND   127

#define CLI_DEFAULT_HOST "/run/sandboxd/sandboxd.sock"

/* ---- ownership through cleanup attributes ---- */
static inline void cli_freep(void *p)
{
    free(*(void **)p);
}
static inline void cli_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
static inline void cli_json_decrefp(json_t **j)
{
    json_decref(*j);
}
#define _cleanup_free_  __attribute__((cleanup(cli_freep)))
#define _cleanup_close_ __attribute__((cleanup(cli_closep)))
#define _cleanup_json_  __attribute__((cleanup(cli_json_decrefp)))

static inline void *cli_steal_pointer(void *pp)
{
    void **p = pp, *v = *p;
    *p = NULL;
    return v;
}

/* ---- errors ---- */

/* What failed, for one line on stderr.  `status` is the HTTP status when the
 * daemon answered (0 otherwise), `code` the API's error code ("not_found"),
 * or "" when there is none. */
struct cli_error {
    long status;
    char code[32];
    char *message;
};

/* Fills err (replacing what it held) and returns -EIO, or -errnum for
 * cli_error_errno(), so that `return cli_error_set(...)` reads naturally. */
int cli_error_set(struct cli_error *err, long status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cli_error_errno(struct cli_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cli_error_free(struct cli_error *err);
/* "sbx: MESSAGE" on stderr, on one line (control characters shown as '?'). */
void cli_error_print(const struct cli_error *err);
/* Prints err, frees it and returns CLI_EXIT_FAILURE: a command's usual end
 * on a failure it reports. */
int cli_fail(struct cli_error *err);
/* The same for a message of sbx's own. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- growing buffers ---- */
struct cli_buf {
    char *data; /* NUL-terminated when not NULL */
    size_t len, cap;
};
int cli_buf_append(struct cli_buf *b, const void *data, size_t len);
void cli_buf_free(struct cli_buf *b);

/* ---- the HTTP client (client.c) ---- */
struct cli_client;

/* host: a unix socket path, unix:PATH, tcp://HOST:PORT or http://HOST:PORT;
 * token: a bearer token (SANDBOXD_TOKEN) or NULL.  Connects on first use. */
int cli_client_new(const char *host, const char *token, struct cli_client **ret,
                   struct cli_error *err);
void cli_client_free(struct cli_client *c);
/* How the daemon is named in messages ("/run/sandboxd/sandboxd.sock"). */
const char *cli_client_name(const struct cli_client *c);

/* A new easy handle for method and path (which starts with /v1), set up for
 * this daemon: socket, token, no signals, no curl output.  *headers must be
 * freed with curl_slist_free_all() after the handle. */
CURL *cli_client_handle(struct cli_client *c, const char *method, const char *path,
                        struct curl_slist **headers);
/* Turns a finished transfer into err: curl's failure, or the daemon's
 * {"error":...} answer for a non-2xx status.  Returns -EIO (or -ECONNREFUSED
 * when the daemon could not be reached). */
int cli_client_fail(struct cli_client *c, CURLcode rc, long status, const struct cli_buf *body,
                    struct cli_error *err);
/* Transport failures after which a request may be made again. */
bool cli_client_retryable(CURLcode rc);

/* One request with a JSON body (or NULL); a 2xx answer's JSON goes to
 * *ret (NULL when empty; pass ret NULL to ignore it). */
int cli_call(struct cli_client *c, const char *method, const char *path, json_t *body, json_t **ret,
             struct cli_error *err);
/* The same with raw bytes both ways. */
int cli_call_raw(struct cli_client *c, const char *method, const char *path, const void *body,
                 size_t body_len, struct cli_buf *ret, struct cli_error *err);
/* A GET whose 2xx body is handed to on_data as it arrives (a negative return
 * from on_data ends the transfer with that error). */
int cli_call_stream(struct cli_client *c, const char *path,
                    int (*on_data)(const char *data, size_t len, void *userdata), void *userdata,
                    struct cli_error *err);

/* A URL-escaped copy of s (free it); NULL on allocation failure. */
char *cli_escape(const char *s);
/* asprintf that aborts the command cleanly on allocation failure. */
char *cli_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- SANDBOX arguments (resolve.c) ---- */

/* arg is a sandbox id, a unique prefix of one (with or without "sb-"), or
 * app/name (a running sandbox of that name).  A bare name that is no id
 * prefix is looked up in the app "default".  Returns the full id. */
int cli_resolve_sandbox(struct cli_client *c, const char *arg, char **ret_id,
                        struct cli_error *err);
/* GET /v1/sandboxes/ID. */
int cli_get_sandbox(struct cli_client *c, const char *id, json_t **ret, struct cli_error *err);
/* The message of the "error" event of a sandbox that finished as error, or
 * NULL (free it). */
char *cli_sandbox_error_message(struct cli_client *c, const char *id);
/* The exit status for a failure to start a process: 127 when its program is
 * not there, 126 when it cannot be executed, else 125. */
int cli_exit_for_start_failure(const char *message);

/* ---- attaching to a process (attach.c) ---- */

enum cli_on_signal {
    CLI_SIGNAL_FORWARD,   /* SIGINT/TERM/HUP/QUIT go to the process; a second one detaches */
    CLI_SIGNAL_TERMINATE, /* the first one terminates the sandbox; a second one detaches */
    CLI_SIGNAL_DETACH,    /* the first one ends sbx */
};

struct cli_attach {
    const char *sandbox_id;
    const char *process_id; /* NULL: the sandbox's entrypoint */
    bool want_stdout, want_stderr;
    bool follow;          /* stream until the process's output ends */
    bool forward_stdin;   /* local stdin to the process, EOF closes its stdin */
    bool close_stdin;     /* without forward_stdin: close the process's stdin at once */
    bool tty;             /* a pty process: raw local terminal, window size forwarded */
    bool want_returncode; /* wait for the end and report the returncode */
    enum cli_on_signal on_signal;
};

struct cli_attach_result {
    bool has_returncode;
    int returncode;
    int signal;         /* the local signal that ended sbx, 0 when none */
    bool output_closed; /* our stdout or stderr went away (EPIPE) */
    json_t *record;     /* entrypoint: the sandbox's final record (decref it) */
};

int cli_attach(struct cli_client *c, const struct cli_attach *a, struct cli_attach_result *ret,
               struct cli_error *err);

/* ---- the terminal and signals (term.c) ---- */

/* Routes SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGWINCH to a self-pipe (read
 * them with cli_signals_next()), ignores SIGPIPE, and installs the handlers
 * that restore a raw terminal on fatal signals and around SIGTSTP.  With
 * restore_on_exit_signals the terminal is restored inside the handler of
 * SIGINT/TERM/HUP/QUIT already (every such signal ends a tty session). */
int cli_signals_init(bool restore_on_exit_signals, struct cli_error *err);
/* Back to the default dispositions (what was ignored at start stays so);
 * SIGPIPE stays ignored and the crash handlers stay. */
void cli_signals_reset(void);
int cli_signals_fd(void);
/* A signal that ended a session: main() ends sbx by it, after cleaning up,
 * so that a calling shell sees sbx killed by it. */
extern int cli_exit_signal;
/* The next signal received, 0 when none is pending. */
int cli_signals_next(void);

/* Puts the terminal on fd in raw mode; cli_term_restore() (also run at exit
 * and from the signal handlers) puts it back as it was. */
int cli_term_raw(int fd, struct cli_error *err);
void cli_term_restore(void);
bool cli_term_size(unsigned *rows, unsigned *cols);

/* ---- output (format.c) ---- */

struct cli_table;
struct cli_table *cli_table_new(size_t ncols, const char *const *headers);
/* Adds a row of ncols strings (copied; NULL prints as "-"). */
void cli_table_add(struct cli_table *t, const char *const *cells);
void cli_table_print(struct cli_table *t, FILE *f);
void cli_table_free(struct cli_table *t);

/* The time t (seconds since the epoch) as "3 minutes ago" / a local
 * "2006-01-02 15:04:05", and a duration as "4m12s"; free the results. */
char *cli_fmt_ago(double t);
char *cli_fmt_time(double t);
char *cli_fmt_duration(double seconds);
/* 1536 → "1.5 KiB". */
char *cli_fmt_bytes(uint64_t n);
/* A sandbox record's state in words: "up 3m12s", "exited (0) 2 minutes ago". */
char *cli_fmt_status(json_t *record);
/* A record's tags as "k=v,k2=v2" ("" when none). */
char *cli_fmt_tags(json_t *record);
/* A JSON value as indented text on stdout. */
int cli_print_json(json_t *j);
/* A string member, or NULL. */
const char *cli_str(json_t *o, const char *key);
/* A new array of list's members ordered by their string member key (NULL
 * on allocation failure). */
json_t *cli_sorted_by(json_t *list, const char *key);

/* write(2) until done, through EINTR and EAGAIN; -errno on failure. */
int cli_write_all(int fd, const void *data, size_t len);

/* ---- commands ---- */

/* What every command gets: the global options, and the client made from
 * them on first use. */
struct cli {
    const char *host;  /* --host, else SANDBOXD_HOST, else the default */
    const char *token; /* SANDBOXD_TOKEN */
    struct cli_client *client;
};
/* The client, made on first use; NULL after printing why it cannot be. */
struct cli_client *cli_client(struct cli *cli);

/* Options every command accepts, for getopt_long tables. */
enum {
    CLI_OPT_HOST = 0x1000,
    CLI_OPT_JSON,
    CLI_OPT_FIRST_LOCAL, /* a command's own long-only options start here */
};
#define CLI_COMMON_OPTIONS                                                                         \
    {"help", no_argument, NULL, 'h'},                                                              \
    {                                                                                              \
        "host", required_argument, NULL, CLI_OPT_HOST                                              \
    }

/* Reports an option getopt_long refused (opterr is 0) as one line;
 * returns CLI_EXIT_USAGE. */
int cli_bad_option(const char *cmd, char *const *argv, int exit_status);
/* A usage error: "sbx CMD: MESSAGE (see sbx CMD --help)". */
int cli_usage_error(const char *cmd, int exit_status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* obj[key] = value as a JSON string; false (after printing) when value is
 * not UTF-8, which JSON cannot carry. */
bool cli_set_string(const char *cmd, json_t *obj, const char *key, const char *value);
/* "512", "512m", "512MiB", "2g" → MiB. */
bool cli_parse_mib(const char *s, long long *ret);
/* Parses "K=V" into a JSON object member; "K" alone takes K's local value
 * when from_env.  Returns false (after printing) when malformed. */
bool cli_parse_kv(const char *cmd, const char *what, const char *arg, bool from_env, json_t *obj);

int cmd_run(struct cli *cli, int argc, char **argv);
int cmd_exec(struct cli *cli, int argc, char **argv);
int cmd_shell(struct cli *cli, int argc, char **argv);
int cmd_ps(struct cli *cli, int argc, char **argv);
int cmd_inspect(struct cli *cli, int argc, char **argv);
int cmd_logs(struct cli *cli, int argc, char **argv);
int cmd_wait(struct cli *cli, int argc, char **argv);
int cmd_terminate(struct cli *cli, int argc, char **argv);
int cmd_rm(struct cli *cli, int argc, char **argv);
int cmd_cp(struct cli *cli, int argc, char **argv);
int cmd_events(struct cli *cli, int argc, char **argv);
int cmd_stats(struct cli *cli, int argc, char **argv);
int cmd_tunnels(struct cli *cli, int argc, char **argv);
int cmd_tag(struct cli *cli, int argc, char **argv);
int cmd_info(struct cli *cli, int argc, char **argv);
int cmd_volume(struct cli *cli, int argc, char **argv);
int cmd_secret(struct cli *cli, int argc, char **argv);
int cmd_image(struct cli *cli, int argc, char **argv);
int cmd_snapshot(struct cli *cli, int argc, char **argv);

/* A command made of subcommands (`sbx volume ls`): each one a function
 * like a command's, its argv[0] its own name. */
struct cli_subcommand {
    const char *name;
    int (*run)(struct cli *cli, int argc, char **argv);
    const char *args; /* its arguments, for the usage text */
    const char *summary;
};
/* Parses CMD's own options (--help, --host), then runs the subcommand
 * named next; `about` is the usage text's second paragraph.  Returns the
 * exit status. */
int cli_run_subcommand(struct cli *cli, const char *cmd, const char *about,
                       const struct cli_subcommand *subs, size_t n, int argc, char **argv);

/* cp.c: copies between the host and a files API, that of a running sandbox
 * (base "/v1/sandboxes/ID") or of a volume ("/v1/volumes/NAME"); `label`
 * names the other side in messages, as LABEL:PATH.  Like cp -r: onto an
 * existing directory the source goes inside it, otherwise the destination
 * becomes the copy.  A local "-" is stdin or stdout (a single file).
 * rpath is absolute.  err is filled on failure. */
int cli_copy_up(struct cli_client *c, const char *base, const char *label, const char *src,
                const char *rdst, struct cli_error *err);
int cli_copy_down(struct cli_client *c, const char *base, const char *label, const char *rsrc,
                  const char *dst, struct cli_error *err);

/* exec.c: a process in a sandbox, attached; shared by exec, shell, run -t. */
struct cli_exec_opts {
    json_t *argv; /* JSON array of strings */
    json_t *env;  /* JSON object or NULL */
    const char *workdir;
    json_t *secrets; /* JSON array of secret names or NULL */
    long timeout_s;  /* 0: none */
    bool interactive, tty;
};
/* Starts and attaches; returns the exit status sbx should end with, after
 * printing any error. */
int cli_exec_attached(struct cli_client *c, const char *sandbox_id, const struct cli_exec_opts *o);

#endif
