/* image.c — sbx image: images built from recipes (steps given as options,
 * like Modal's image builder) or from a Dockerfile, their build logs,
 * listing, inspecting, deleting, and OCI tars out and in; like `docker
 * image` and `docker build`.  Snapshots of a running sandbox are `sbx
 * snapshot` (snapshot.c).
 *
 * The daemon builds a recipe once: an image's id is a hash of its base and
 * its steps, so building the same recipe again answers at once with the
 * same id.  The steps are sent in the order of the command line, so the
 * same command line is the same recipe.  `build` follows the build's log to
 * stderr and prints the id alone on stdout, for `id=$(sbx image build ...)`.
 *
 * IMAGE arguments are an image's name or id, or a unique prefix of an id
 * (with or without "im-"), as SANDBOX arguments are (resolve.c). */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define ABOUT                                                                                      \
    "Images: built by the daemon from a recipe (a base and steps) or a Dockerfile,\n"              \
    "or snapshotted from a running sandbox (sbx snapshot); sandboxes run them with\n"              \
    "sbx run --image IMAGE.  IMAGE is an image's id or name, or a unique prefix of\n"              \
    "an id."

#define IMAGE_ID_LEN        25         /* "im-" + 22 base62 characters */
#define DOCKERFILE_MAX      (1u << 20) /* a Dockerfile is text */
#define BUILD_POLL_PAUSE_NS 200000000L /* between log requests that brought nothing */

/* The options every subcommand without its own takes: --help and --host.
 * Returns -1 to go on, else the exit status. */
static int parse_common(struct cli *cli, const char *cmd, void (*usage)(FILE *f), int argc,
                        char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int ch;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        default:
            return cli_bad_option(cmd, argv, CLI_EXIT_USAGE);
        }
    }
    return -1;
}

/* An IMAGE argument the API can take as one path segment (the daemon's
 * names: [A-Za-z0-9._-]{1,63}, not . or ..). */
static bool image_arg_ok(const char *cmd, const char *arg)
{
    size_t n = strlen(arg);

    if (n == 0 || n > 63 || !strcmp(arg, ".") || !strcmp(arg, "..") ||
        strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n) {
        cli_usage_error(cmd, CLI_EXIT_USAGE,
                        "image `%s`: an image's id or name, or a prefix of an id", arg);
        return false;
    }
    return true;
}

/* "/v1/images/ID" followed by rest. */
static char *image_path(const char *id, const char *rest)
{
    _cleanup_free_ char *e = cli_escape(id);

    return cli_strdupf("/v1/images/%s%s", e ? e : "", rest);
}

static int dup_id(const char *id, char **ret_id, struct cli_error *err)
{
    *ret_id = strdup(id);
    return *ret_id ? 0 : cli_error_errno(err, ENOMEM, "resolve");
}

/* arg is an image's id or name, or a unique prefix of an id (with or
 * without "im-").  What matches nothing is returned as it is, for the
 * daemon to say it does not know it. */
static int image_resolve(struct cli_client *c, const char *arg, char **ret_id,
                         struct cli_error *err)
{
    _cleanup_free_ char *full_prefix = strncmp(arg, "im-", 3) ? cli_strdupf("im-%s", arg) : NULL;
    _cleanup_json_ json_t *answer = NULL;
    struct cli_buf names = {0};
    const char *match = arg;
    size_t i, n = 0;
    json_t *img, *list;
    int r;

    /* A whole id is used as it is. */
    if (strlen(arg) == IMAGE_ID_LEN && !full_prefix)
        return dup_id(arg, ret_id, err);
    r = cli_call(c, "GET", "/v1/images", NULL, &answer, err);
    if (r < 0)
        return r;
    list = json_object_get(answer, "images");
    json_array_foreach(list, i, img)
    {
        if (!strcmp(cli_str(img, "image_id") ?: "", arg))
            return dup_id(arg, ret_id, err);
    }
    json_array_foreach(list, i, img)
    {
        const char *id = cli_str(img, "image_id");
        if (!id || (strncmp(id, arg, strlen(arg)) &&
                    (!full_prefix || strncmp(id, full_prefix, strlen(full_prefix)))))
            continue;
        match = id;
        if (n < 5) {
            cli_buf_append(&names, n ? ", " : "", n ? 2 : 0);
            cli_buf_append(&names, id, strlen(id));
        }
        n++;
    }
    if (n > 1) {
        cli_error_set(err, 0, "`%s` is ambiguous: it begins %zu images (%s%s); give more of the id",
                      arg, n, names.data ? names.data : "", n > 5 ? ", ..." : "");
        cli_buf_free(&names);
        return -EINVAL;
    }
    cli_buf_free(&names);
    return dup_id(match, ret_id, err);
}

/* Resolves arg (its id in *ret_id) and makes one request on the image:
 * method on /v1/images/ID, its answer in *ret (ret may be NULL). */
static int image_request(struct cli_client *c, const char *method, const char *arg, char **ret_id,
                         json_t **ret, struct cli_error *err)
{
    _cleanup_free_ char *path = NULL;
    int r = image_resolve(c, arg, ret_id, err);

    if (r < 0)
        return r;
    path = image_path(*ret_id, "");
    return cli_call(c, method, path, NULL, ret, err);
}

/* ---- following a log ---- */

/* A log streamed to fd, over one request or several: each request sends
 * the log from its start, and what an earlier one brought is skipped. */
struct log_sink {
    int fd;          /* -1: nowhere */
    bool keep_going; /* a write error does not end the transfer (stderr) */
    uint64_t pos;    /* bytes of this request so far */
    uint64_t seen;   /* bytes of the log written so far */
};

static int log_chunk(const char *data, size_t len, void *userdata)
{
    struct log_sink *s = userdata;
    uint64_t start = s->pos;
    int r;

    s->pos += len;
    if (s->pos <= s->seen)
        return 0;
    if (start < s->seen) {
        data += s->seen - start;
        len = (size_t)(s->pos - s->seen);
    }
    s->seen = s->pos;
    if (s->fd < 0)
        return 0;
    r = cli_write_all(s->fd, data, len);
    if (r < 0 && s->keep_going) {
        s->fd = -1; /* (stderr is gone: the build still ends with its id) */
        return 0;
    }
    return r;
}

/* Follows the build of id to its end, its log to log_fd (-1: nowhere);
 * *ret_view is the image's record then. */
static int build_wait(struct cli_client *c, const char *id, int log_fd, json_t **ret_view,
                      struct cli_error *err)
{
    _cleanup_free_ char *logs = image_path(id, "/logs?follow=1"), *path = image_path(id, "");
    struct log_sink s = {.fd = log_fd, .keep_going = true};

    for (;;) {
        uint64_t before = s.seen;
        json_t *view = NULL;
        const char *state;
        int r;

        s.pos = 0;
        r = cli_call_stream(c, logs, log_chunk, &s, err);
        if (r < 0)
            return r;
        r = cli_call(c, "GET", path, NULL, &view, err);
        if (r < 0)
            return r;
        state = cli_str(view, "state");
        if (!state || strcmp(state, "building")) {
            *ret_view = view;
            return 0;
        }
        /* The stream ended before the build did: ask again (what was
         * shown is skipped), pausing when it brought nothing new. */
        json_decref(view);
        if (s.seen == before) {
            struct timespec ts = {.tv_nsec = BUILD_POLL_PAUSE_NS};
            nanosleep(&ts, NULL);
        }
    }
}

/* ---- build ---- */

static void build_usage(FILE *f)
{
    fprintf(f,
            "usage: sbx image build [OPTIONS]\n"
            "Builds an image from a base and steps, or from a Dockerfile, and prints its id\n"
            "once it is ready.  The steps run in the order given on the command line; the\n"
            "same recipe is built once (the same id again, at once).  The build's log goes\n"
            "to stderr as it runs; a build that fails exits 1 with the daemon's error.\n"
            "Interrupting sbx leaves the build running (sbx image logs -f IMAGE).\n\n"
            "      --base IMAGE           the image to build on (default: the daemon's,\n"
            "                             debian-slim; a Dockerfile's FROM)\n"
            "  -f, --file DOCKERFILE      a Dockerfile (`-`: stdin): FROM, RUN, ENV, WORKDIR,\n"
            "                             COPY, USER, ENTRYPOINT, CMD; its steps run after\n"
            "                             those of the options, which must come before -f\n"
            "Steps (repeatable; consecutive --apt, --pip or --env make one step):\n"
            "      --run CMD              run CMD with /bin/sh -c\n"
            "      --apt PKG              install Debian packages (apt-get)\n"
            "      --pip PKG              install Python packages (pip)\n"
            "      --index-url URL        pip's index for every --pip step\n"
            "      --extra-index-url URL  another index for every --pip step\n"
            "      --env K=V              set a variable\n"
            "      --workdir DIR          make DIR and work there from then on\n"
            "      --user USER            run as USER (NAME, UID or UID:GID) from then on\n"
            "      --copy SRC:DST         copy SRC, a path on the daemon's host that its config\n"
            "                             allows (host_mounts), to DST in the image\n"
            "Output:\n"
            "  -d, --detach               print the id at once, without waiting for the build\n"
            "  -q, --quiet                no log (on failure, its end with the error)\n"
            "      --host HOST            the daemon (see sbx --help)\n"
            "  -h, --help                 this help\n");
}

enum {
    OPT_BASE = CLI_OPT_FIRST_LOCAL,
    OPT_RUN,
    OPT_APT,
    OPT_PIP,
    OPT_INDEX_URL,
    OPT_EXTRA_INDEX_URL,
    OPT_ENV,
    OPT_WORKDIR,
    OPT_USER,
    OPT_COPY,
};

/* The long name of the option that getopt_long() returned as val. */
static const char *option_name(const struct option *opts, int val)
{
    for (; opts->name; opts++)
        if (opts->val == val)
            return opts->name;
    return "?";
}

/* The last step when it is of kind, to merge consecutive options into. */
static json_t *last_step_of(json_t *steps, const char *kind)
{
    size_t n = json_array_size(steps);
    json_t *last = n ? json_array_get(steps, n - 1) : NULL;

    return json_object_get(last, kind) ? last : NULL;
}

/* A step {kind: value}; value NULL (json_string() of what is not UTF-8)
 * is a usage error. */
static bool add_step(json_t *steps, const char *kind, const char *opt, const char *arg,
                     json_t *value)
{
    if (!value) {
        cli_usage_error("image build", CLI_EXIT_USAGE, "%s `%s`: not valid UTF-8", opt, arg);
        return false;
    }
    json_array_append_new(steps, json_pack("{s:o}", kind, value));
    return true;
}

/* Packages (arg split at blanks) into the apt_install or pip_install step
 * just before, or a new one. */
static bool add_packages(json_t *steps, const char *kind, const char *opt, const char *arg)
{
    json_t *step = last_step_of(steps, kind), *list;
    const char *p = arg;
    size_t n;

    if (!arg[strspn(arg, " \t\n")]) {
        cli_usage_error("image build", CLI_EXIT_USAGE, "%s needs a package name", opt);
        return false;
    }
    if (!step) {
        step = json_pack("{s:[]}", kind);
        json_array_append_new(steps, step);
    }
    list = json_object_get(step, kind);
    for (; *(p += strspn(p, " \t\n")); p += n) {
        json_t *name;
        n = strcspn(p, " \t\n");
        name = json_stringn(p, n);
        if (!name) {
            cli_usage_error("image build", CLI_EXIT_USAGE, "%s `%s`: not valid UTF-8", opt, arg);
            return false;
        }
        json_array_append_new(list, name);
    }
    return true;
}

/* p made absolute (from the current directory) and lexically clean: no
 * empty, `.` or `..` components, which the daemon refuses.  Symlinks are
 * left as they are: the daemon's config (host_mounts) names host paths as
 * they are written.  NULL on allocation failure. */
static char *clean_host_path(const char *p)
{
    _cleanup_free_ char *cwd = p[0] == '/' ? NULL : getcwd(NULL, 0);
    _cleanup_free_ char *full = cli_strdupf("%s/%s", cwd ? cwd : "", p);
    char *out = malloc(strlen(full) + 2), *save = NULL;
    size_t n = 0;

    if (!out || (p[0] != '/' && !cwd)) {
        free(out);
        return NULL;
    }
    for (char *c = strtok_r(full, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, "."))
            continue;
        if (!strcmp(c, "..")) {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
            continue;
        }
        out[n++] = '/';
        memcpy(out + n, c, strlen(c));
        n += strlen(c);
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = '\0';
    return out;
}

/* --copy SRC:DST, split at the last ":/" (DST is absolute). */
static bool add_copy(json_t *steps, const char *arg)
{
    const char *sep = NULL;
    _cleanup_free_ char *src = NULL, *host_path = NULL;
    json_t *s, *d;

    for (const char *p = strstr(arg, ":/"); p; p = strstr(p + 1, ":/"))
        sep = p;
    if (!sep || sep == arg) {
        cli_usage_error("image build", CLI_EXIT_USAGE, "--copy `%s`: expected SRC:/DST", arg);
        return false;
    }
    src = strndup(arg, (size_t)(sep - arg));
    host_path = src ? clean_host_path(src) : NULL;
    if (!host_path) {
        cli_warn("--copy %s: %s", arg, strerror(errno ? errno : ENOMEM));
        return false;
    }
    s = json_string(host_path);
    d = json_string(sep + 1);
    if (!s || !d) {
        json_decref(s);
        json_decref(d);
        cli_usage_error("image build", CLI_EXIT_USAGE, "--copy `%s`: not valid UTF-8", arg);
        return false;
    }
    json_array_append_new(steps, json_pack("{s:{s:o,s:o}}", "copy", "src", s, "dst", d));
    return true;
}

/* The Dockerfile at path ("-": stdin) as a JSON string in *ret.  Returns
 * 0, or the exit status after printing why not. */
static int read_dockerfile(const char *path, json_t **ret)
{
    bool is_stdin = !strcmp(path, "-");
    const char *name = is_stdin ? "stdin" : path;
    _cleanup_close_ int fd = is_stdin ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    int in = is_stdin ? STDIN_FILENO : fd, status = 0;
    struct cli_buf b = {0};
    char buf[65536];

    if (in < 0) {
        cli_warn("-f %s: %s", name, strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0) {
                cli_warn("-f %s: %s", name, strerror(errno));
                status = CLI_EXIT_FAILURE;
            }
            break;
        }
        if (b.len + (size_t)n > DOCKERFILE_MAX) {
            status = cli_usage_error("image build", CLI_EXIT_USAGE,
                                     "-f %s: larger than %u KiB: not a Dockerfile", name,
                                     DOCKERFILE_MAX >> 10);
            break;
        }
        if (cli_buf_append(&b, buf, (size_t)n) < 0) {
            cli_warn("-f %s: %s", name, strerror(ENOMEM));
            status = CLI_EXIT_FAILURE;
            break;
        }
    }
    if (!status && !(*ret = json_stringn(b.data ? b.data : "", b.len)))
        status =
            cli_usage_error("image build", CLI_EXIT_USAGE, "-f %s: not valid UTF-8 text", name);
    cli_buf_free(&b);
    return status;
}

static int image_build(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"base", required_argument, NULL, OPT_BASE},
        {"file", required_argument, NULL, 'f'},
        {"run", required_argument, NULL, OPT_RUN},
        {"apt", required_argument, NULL, OPT_APT},
        {"pip", required_argument, NULL, OPT_PIP},
        {"index-url", required_argument, NULL, OPT_INDEX_URL},
        {"extra-index-url", required_argument, NULL, OPT_EXTRA_INDEX_URL},
        {"env", required_argument, NULL, OPT_ENV},
        {"workdir", required_argument, NULL, OPT_WORKDIR},
        {"user", required_argument, NULL, OPT_USER},
        {"copy", required_argument, NULL, OPT_COPY},
        {"detach", no_argument, NULL, 'd'},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    _cleanup_json_ json_t *body = json_object(), *steps = json_array(), *answer = NULL;
    _cleanup_json_ json_t *view = NULL;
    const char *index_url = NULL, *extra_index_url = NULL, *file = NULL, *id, *state;
    bool detach = false, quiet = false, ok = true;
    struct cli_error err = {0};
    struct cli_client *c;
    size_t i;
    json_t *s;
    int ch;

    if (!body || !steps)
        return CLI_EXIT_FAILURE;
    opterr = 0;
    while (ok && (ch = getopt_long(argc, argv, "hf:dq", opts, NULL)) != -1) {
        if (file && ch >= OPT_RUN && ch != OPT_INDEX_URL && ch != OPT_EXTRA_INDEX_URL)
            return cli_usage_error("image build", CLI_EXIT_USAGE,
                                   "--%s comes after -f, but a Dockerfile's steps run last: "
                                   "give steps before -f",
                                   option_name(opts, ch));
        switch (ch) {
        case 'h':
            build_usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case OPT_BASE:
            ok = cli_set_string("image build", body, "base", optarg);
            break;
        case 'f': {
            json_t *text = NULL;
            int status;
            if (file)
                return cli_usage_error("image build", CLI_EXIT_USAGE, "give -f once");
            file = optarg;
            if ((status = read_dockerfile(file, &text)))
                return status;
            json_object_set_new(body, "dockerfile", text);
            break;
        }
        case OPT_RUN:
            ok = add_step(steps, "run", "--run", optarg, json_string(optarg));
            break;
        case OPT_APT:
            ok = add_packages(steps, "apt_install", "--apt", optarg);
            break;
        case OPT_PIP:
            ok = add_packages(steps, "pip_install", "--pip", optarg);
            break;
        case OPT_INDEX_URL:
            index_url = optarg;
            break;
        case OPT_EXTRA_INDEX_URL:
            extra_index_url = optarg;
            break;
        case OPT_ENV: {
            json_t *step = last_step_of(steps, "env");
            if (!step) {
                step = json_pack("{s:{}}", "env");
                json_array_append_new(steps, step);
            }
            ok = cli_parse_kv("image build", "--env", optarg, false, json_object_get(step, "env"));
            break;
        }
        case OPT_WORKDIR:
            ok = add_step(steps, "workdir", "--workdir", optarg, json_string(optarg));
            break;
        case OPT_USER:
            ok = add_step(steps, "user", "--user", optarg, json_string(optarg));
            break;
        case OPT_COPY:
            ok = add_copy(steps, optarg);
            break;
        case 'd':
            detach = true;
            break;
        case 'q':
            quiet = true;
            break;
        default:
            return cli_bad_option("image build", argv, CLI_EXIT_USAGE);
        }
    }
    if (!ok)
        return CLI_EXIT_USAGE;
    if (optind < argc)
        return cli_usage_error("image build", CLI_EXIT_USAGE,
                               "unexpected argument `%s` (files go in with --copy SRC:DST)",
                               argv[optind]);
    if (!file && json_array_size(steps) == 0)
        return cli_usage_error("image build", CLI_EXIT_USAGE,
                               "nothing to build: give -f DOCKERFILE or steps (--run, --apt, "
                               "--pip, --env, --copy, ...)");
    /* The index options go with every pip step. */
    if (index_url || extra_index_url) {
        bool any = false;
        json_array_foreach(steps, i, s)
        {
            if (!json_object_get(s, "pip_install"))
                continue;
            any = true;
            if ((index_url && !cli_set_string("image build", s, "index_url", index_url)) ||
                (extra_index_url &&
                 !cli_set_string("image build", s, "extra_index_url", extra_index_url)))
                return CLI_EXIT_USAGE;
        }
        if (!any)
            return cli_usage_error("image build", CLI_EXIT_USAGE,
                                   "--index-url and --extra-index-url go with --pip");
    }
    if (json_array_size(steps))
        json_object_set(body, "steps", steps);
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    if (cli_call(c, "POST", "/v1/images", body, &answer, &err) < 0)
        return cli_fail(&err);
    id = cli_str(answer, "image_id");
    state = cli_str(answer, "state") ?: "";
    if (!id) {
        cli_error_set(&err, 0, "sandboxd's answer to POST /v1/images has no image_id");
        return cli_fail(&err);
    }
    if (detach || !strcmp(state, "ready")) {
        printf("%s\n", id);
        return 0;
    }
    /* The id is printed at the end even when stderr has gone. */
    signal(SIGPIPE, SIG_IGN);
    if (!quiet)
        fprintf(stderr, "==> building %s\n", id);
    if (build_wait(c, id, quiet ? -1 : STDERR_FILENO, &view, &err) < 0) {
        _cleanup_free_ char *msg = strdup(err.message ?: "");
        cli_error_set(&err, err.status, "%s (following the build of %s)", msg ? msg : "", id);
        return cli_fail(&err);
    }
    state = cli_str(view, "state") ?: "?";
    if (!strcmp(state, "ready")) {
        printf("%s\n", id);
        return 0;
    }
    if (quiet && cli_str(view, "log_tail")) {
        const char *tail = cli_str(view, "log_tail");
        size_t n = strlen(tail);
        fprintf(stderr, "%s%s", tail, n && tail[n - 1] != '\n' ? "\n" : "");
    }
    cli_error_set(&err, 0, "the build of %s failed: %s", id,
                  cli_str(view, "error") ?: "(no error given)");
    return cli_fail(&err);
}

/* ---- ls ---- */

static void ls_usage(FILE *f)
{
    fprintf(f, "usage: sbx image ls [OPTIONS]\n"
               "Lists the images, the system's (busybox, debian-slim) among them, by id: their\n"
               "STATE (ready, building with its step, failed), how many LAYERS they stack, and\n"
               "when they were CREATED (`-` for the system's).\n\n"
               "  -q, --quiet        ids only\n"
               "      --json         the images as a JSON array\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int image_ls(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    static const char *const headers[] = {"IMAGE", "STATE", "LAYERS", "CREATED"};
    _cleanup_json_ json_t *answer = NULL, *list = NULL;
    bool quiet = false, as_json = false;
    struct cli_error err = {0};
    struct cli_client *c;
    struct cli_table *t;
    json_t *v;
    size_t i;
    int ch;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            ls_usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case CLI_OPT_JSON:
            as_json = true;
            break;
        default:
            return cli_bad_option("image ls", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind < argc)
        return cli_usage_error("image ls", CLI_EXIT_USAGE, "unexpected argument `%s`",
                               argv[optind]);
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    if (cli_call(c, "GET", "/v1/images", NULL, &answer, &err) < 0)
        return cli_fail(&err);
    list = cli_sorted_by(json_object_get(answer, "images"), "image_id");
    if (!list)
        return CLI_EXIT_FAILURE;
    if (as_json)
        return cli_print_json(list) < 0 ? CLI_EXIT_FAILURE : 0;
    if (quiet) {
        json_array_foreach(list, i, v) printf("%s\n", cli_str(v, "image_id") ?: "");
        return 0;
    }
    t = cli_table_new(4, headers);
    json_array_foreach(list, i, v)
    {
        const char *state = cli_str(v, "state");
        json_t *layers = json_object_get(v, "layers"), *created = json_object_get(v, "created_at");
        _cleanup_free_ char *state_text =
            state && !strcmp(state, "building") && json_is_integer(json_object_get(v, "step"))
                ? cli_strdupf("building %lld/%lld",
                              (long long)json_integer_value(json_object_get(v, "step")),
                              (long long)json_integer_value(json_object_get(v, "steps")))
                : NULL;
        _cleanup_free_ char *n = json_is_integer(layers)
                                     ? cli_strdupf("%lld", (long long)json_integer_value(layers))
                                     : NULL;
        _cleanup_free_ char *ago =
            json_is_number(created) ? cli_fmt_ago(json_number_value(created)) : NULL;
        const char *cells[] = {cli_str(v, "image_id"), state_text ? state_text : state, n, ago};
        cli_table_add(t, cells);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
    return 0;
}

/* ---- logs ---- */

static void logs_usage(FILE *f)
{
    fprintf(f, "usage: sbx image logs [OPTIONS] IMAGE\n"
               "Prints the log of the image's build (the steps' output, with a header each),\n"
               "on stdout.  Images made otherwise (the system's, snapshots) have none.\n\n"
               "  -f, --follow       keep printing until the build ends\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int image_logs(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"follow", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    _cleanup_free_ char *id = NULL, *path = NULL;
    struct log_sink s = {.fd = STDOUT_FILENO};
    struct cli_error err = {0};
    bool follow = false;
    struct cli_client *c;
    int ch, r;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "hf", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            logs_usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case 'f':
            follow = true;
            break;
        default:
            return cli_bad_option("image logs", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error("image logs", CLI_EXIT_USAGE, "give exactly one IMAGE");
    if (!image_arg_ok("image logs", argv[optind]))
        return CLI_EXIT_USAGE;
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    r = image_resolve(c, argv[optind], &id, &err);
    if (r >= 0) {
        path = image_path(id, follow ? "/logs?follow=1" : "/logs");
        r = cli_call_stream(c, path, log_chunk, &s, &err);
    }
    if (r == -EPIPE)
        return 128 + SIGPIPE;
    if (r < 0) {
        if (!err.message)
            cli_error_errno(&err, -r, "write stdout");
        return cli_fail(&err);
    }
    return 0;
}

/* ---- inspect ---- */

static void inspect_usage(FILE *f)
{
    fprintf(f, "usage: sbx image inspect [OPTIONS] IMAGE...\n"
               "Prints images as the daemon describes them, as JSON (an object for one IMAGE,\n"
               "an array for several): state, layers, env, workdir, entrypoint, user and the\n"
               "recipe; for a failed build its error and the end of its log.\n\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int image_inspect(struct cli *cli, int argc, char **argv)
{
    _cleanup_json_ json_t *records = json_array();
    struct cli_client *c;
    int r = parse_common(cli, "image inspect", inspect_usage, argc, argv), status = 0;

    if (r >= 0)
        return r;
    if (!records)
        return CLI_EXIT_FAILURE;
    if (optind >= argc)
        return cli_usage_error("image inspect", CLI_EXIT_USAGE, "no IMAGE given");
    for (int a = optind; a < argc; a++)
        if (!image_arg_ok("image inspect", argv[a]))
            return CLI_EXIT_USAGE;
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    for (int a = optind; a < argc; a++) {
        _cleanup_free_ char *id = NULL;
        struct cli_error err = {0};
        json_t *rec = NULL;

        if (image_request(c, "GET", argv[a], &id, &rec, &err) < 0) {
            cli_fail(&err);
            status = CLI_EXIT_FAILURE;
            continue;
        }
        json_array_append_new(records, rec);
    }
    if (json_array_size(records) &&
        cli_print_json(argc - optind == 1 ? json_array_get(records, 0) : records) < 0)
        return CLI_EXIT_FAILURE;
    return status;
}

/* ---- rm ---- */

static void rm_usage(FILE *f)
{
    fprintf(f, "usage: sbx image rm [OPTIONS] IMAGE...\n"
               "Deletes images, and the layers no other image uses, and prints their ids.  An\n"
               "image that a sandbox which has not finished (or a build) uses is not deleted:\n"
               "terminate that first.  The system's images are not deleted here.\n\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int image_rm(struct cli *cli, int argc, char **argv)
{
    struct cli_client *c;
    int r = parse_common(cli, "image rm", rm_usage, argc, argv), status = 0;

    if (r >= 0)
        return r;
    if (optind >= argc)
        return cli_usage_error("image rm", CLI_EXIT_USAGE, "no IMAGE given");
    for (int a = optind; a < argc; a++)
        if (!image_arg_ok("image rm", argv[a]))
            return CLI_EXIT_USAGE;
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    for (int a = optind; a < argc; a++) {
        _cleanup_free_ char *id = NULL;
        struct cli_error err = {0};

        if (image_request(c, "DELETE", argv[a], &id, NULL, &err) < 0) {
            _cleanup_free_ char *msg = err.status == 409 ? strdup(err.message ?: "") : NULL;
            /* In use: say what to do about it. */
            if (msg && strstr(msg, "in use by sb-"))
                cli_error_set(&err, 409, "%s: terminate it first (sbx terminate)", msg);
            else if (msg && (strstr(msg, "in use by im-") || strstr(msg, "its own build")))
                cli_error_set(&err, 409, "%s: wait for that build to end (sbx image logs -f)", msg);
            cli_fail(&err);
            status = CLI_EXIT_FAILURE;
            continue;
        }
        printf("%s\n", id);
        fflush(stdout);
    }
    return status;
}

/* ---- export ---- */

static void export_usage(FILE *f)
{
    fprintf(f, "usage: sbx image export [OPTIONS] IMAGE [FILE]\n"
               "Writes the image as an OCI image layout tar, with its config, to FILE, or to\n"
               "stdout without FILE or with `-` (not a terminal).  FILE appears once the whole\n"
               "tar is there.  `sbx image import` on another daemon, or `skopeo copy\n"
               "oci-archive:FILE ...`, take it.\n\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

struct fd_sink {
    int fd;
};

static int write_to_fd(const char *data, size_t len, void *userdata)
{
    struct fd_sink *s = userdata;

    return cli_write_all(s->fd, data, len);
}

/* path's answer into a new file beside file, renamed over it once
 * complete, with the mode a new file gets. */
static int download_to(struct cli_client *c, const char *path, const char *file,
                       struct cli_error *err)
{
    _cleanup_free_ char *tmp = cli_strdupf("%s.sbx-XXXXXX", file);
    struct fd_sink s;
    mode_t mask = umask(0);
    int r;

    umask(mask);
    s.fd = mkostemp(tmp, O_CLOEXEC);
    if (s.fd < 0)
        return cli_error_errno(err, errno, "create %s", tmp);
    r = cli_call_stream(c, path, write_to_fd, &s, err);
    if (r < 0 && !err->message)
        cli_error_errno(err, -r, "write %s", file);
    if (r >= 0 && fchmod(s.fd, 0666 & ~mask) < 0)
        r = cli_error_errno(err, errno, "chmod %s", file);
    if (close(s.fd) < 0 && r >= 0)
        r = cli_error_errno(err, errno, "write %s", file);
    if (r >= 0 && rename(tmp, file) < 0)
        r = cli_error_errno(err, errno, "rename %s to %s", tmp, file);
    if (r < 0)
        unlink(tmp);
    return r;
}

static int image_export(struct cli *cli, int argc, char **argv)
{
    _cleanup_free_ char *id = NULL, *path = NULL;
    struct fd_sink s = {.fd = STDOUT_FILENO};
    struct cli_error err = {0};
    const char *file;
    struct cli_client *c;
    int r = parse_common(cli, "image export", export_usage, argc, argv);

    if (r >= 0)
        return r;
    if (argc - optind < 1 || argc - optind > 2)
        return cli_usage_error("image export", CLI_EXIT_USAGE, "give IMAGE and at most one FILE");
    if (!image_arg_ok("image export", argv[optind]))
        return CLI_EXIT_USAGE;
    file = argc - optind == 2 ? argv[optind + 1] : "-";
    if (!strcmp(file, "-") && isatty(STDOUT_FILENO))
        return cli_usage_error("image export", CLI_EXIT_USAGE,
                               "stdout is a terminal, not a place for a tar: give FILE or "
                               "redirect stdout");
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    r = image_resolve(c, argv[optind], &id, &err);
    if (r >= 0) {
        path = image_path(id, "/export");
        if (strcmp(file, "-"))
            r = download_to(c, path, file, &err);
        else
            r = cli_call_stream(c, path, write_to_fd, &s, &err);
    }
    if (r == -EPIPE)
        return 128 + SIGPIPE;
    if (r < 0) {
        if (!err.message)
            cli_error_errno(&err, -r, "write stdout");
        return cli_fail(&err);
    }
    return 0;
}

/* ---- import ---- */

static void import_usage(FILE *f)
{
    fprintf(f, "usage: sbx image import [OPTIONS] FILE\n"
               "Sends FILE (`-`: stdin, not a terminal), a tar of an OCI image layout or an OCI\n"
               "archive (what sbx image export, `skopeo copy ... oci-archive:FILE` or `docker\n"
               "buildx build --output type=oci` write), to the daemon, which makes an image of\n"
               "it, and prints the new image's id.\n\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

struct upload {
    int fd;
    int errnum; /* why reading failed, 0 when it did not */
};

static size_t upload_read(char *buf, size_t size, size_t n, void *userdata)
{
    struct upload *u = userdata;
    ssize_t got;

    do
        got = read(u->fd, buf, size * n);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        u->errnum = errno;
        return CURL_READFUNC_ABORT;
    }
    return (size_t)got;
}

static size_t collect(char *p, size_t size, size_t n, void *userdata)
{
    return cli_buf_append(userdata, p, size * n) < 0 ? 0 : size * n;
}

/* POST /v1/images/import with fd's bytes as the body, as they are read
 * (size bytes, or chunked when size < 0): an image may be far larger than
 * what sbx should hold in memory. */
static int import_tar(struct cli_client *c, int fd, off_t size, const char *name, char **ret_id,
                      struct cli_error *err)
{
    struct curl_slist *headers = NULL, *l;
    struct upload u = {.fd = fd};
    struct cli_buf answer = {0};
    _cleanup_json_ json_t *j = NULL;
    CURL *h = cli_client_handle(c, "POST", "/v1/images/import", &headers);
    CURLcode rc;
    long status = 0;
    int r;

    if (!h)
        return cli_error_errno(err, ENOMEM, "POST /v1/images/import");
    l = curl_slist_append(headers, "Content-Type: application/x-tar");
    if (l && size < 0)
        l = curl_slist_append(l, "Transfer-Encoding: chunked");
    if (!l) {
        curl_slist_free_all(headers);
        curl_easy_cleanup(h);
        return cli_error_errno(err, ENOMEM, "POST /v1/images/import");
    }
    headers = l;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    /* No fields: the body comes from the read callback. */
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(size < 0 ? -1 : size));
    curl_easy_setopt(h, CURLOPT_READFUNCTION, upload_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &u);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer);
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
    if (u.errnum) {
        cli_buf_free(&answer);
        return cli_error_errno(err, u.errnum, "read %s", name);
    }
    r = cli_client_fail(c, rc, status, &answer, err);
    if (r >= 0) {
        j = answer.len ? json_loadb(answer.data, answer.len, 0, NULL) : NULL;
        if (!cli_str(j, "image_id"))
            r = cli_error_set(err, 0, "sandboxd's answer to the import has no image_id");
        else if (!(*ret_id = strdup(cli_str(j, "image_id"))))
            r = cli_error_errno(err, ENOMEM, "import");
    }
    cli_buf_free(&answer);
    return r;
}

static int image_import(struct cli *cli, int argc, char **argv)
{
    _cleanup_free_ char *id = NULL;
    _cleanup_close_ int fd = -1;
    struct cli_error err = {0};
    struct cli_client *c;
    struct stat st;
    const char *name;
    int in, r = parse_common(cli, "image import", import_usage, argc, argv);

    if (r >= 0)
        return r;
    if (argc - optind != 1)
        return cli_usage_error("image import", CLI_EXIT_USAGE, "give one FILE (`-`: stdin)");
    if (!strcmp(argv[optind], "-")) {
        if (isatty(STDIN_FILENO))
            return cli_usage_error("image import", CLI_EXIT_USAGE,
                                   "stdin is a terminal: give FILE or redirect a tar to stdin");
        in = STDIN_FILENO;
        name = "stdin";
    } else {
        name = argv[optind];
        fd = open(name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            cli_warn("%s: %s", name, strerror(errno));
            return CLI_EXIT_FAILURE;
        }
        in = fd;
    }
    if (fstat(in, &st) < 0) {
        cli_warn("%s: %s", name, strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    if (S_ISDIR(st.st_mode))
        return cli_usage_error("image import", CLI_EXIT_USAGE,
                               "%s is a directory: give a tar of it (tar -C %s -c .)", name, name);
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    if (import_tar(c, in, S_ISREG(st.st_mode) ? st.st_size : -1, name, &id, &err) < 0)
        return cli_fail(&err);
    printf("%s\n", id);
    return 0;
}

static const struct cli_subcommand subcommands[] = {
    {"ls", image_ls, "[-q] [--json]", "list images"},
    {"build", image_build, "[-f FILE] [STEPS]", "build an image; print its id"},
    {"logs", image_logs, "[-f] IMAGE", "print an image's build log"},
    {"inspect", image_inspect, "IMAGE...", "images in detail, as JSON"},
    {"rm", image_rm, "IMAGE...", "delete images"},
    {"export", image_export, "IMAGE [FILE]", "write an image as an OCI tar"},
    {"import", image_import, "FILE", "make an image of an OCI tar; print its id"},
};

int cmd_image(struct cli *cli, int argc, char **argv)
{
    return cli_run_subcommand(cli, "image", ABOUT, subcommands,
                              sizeof(subcommands) / sizeof(subcommands[0]), argc, argv);
}
