/* info.c — sbx info: the daemon sbx talks to. */
#include "cli.h"

#include <getopt.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sbx info [OPTIONS]\n"
            "Shows the daemon: where it is, its version, cgroup mode, limits and counts.\n\n"
            "      --json         the daemon's answer as JSON\n"
            "      --certificate  print only the certificate tls tunnels are served with\n"
            "                     (PEM), for a client to trust: sbx info --certificate > ca.pem\n"
            "      --host HOST    the daemon (see sbx --help)\n"
            "  -h, --help         this help\n");
}

static void line(const char *key, const char *value)
{
    printf("%-16s %s\n", key, value && *value ? value : "-");
}

int cmd_info(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {"certificate", no_argument, NULL, CLI_OPT_FIRST_LOCAL},
        {NULL, 0, NULL, 0},
    };
    _cleanup_json_ json_t *info = NULL;
    bool as_json = false, certificate = false;
    struct cli_error err = {0};
    struct cli_client *c;
    json_t *limits, *counts;
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
        case CLI_OPT_JSON:
            as_json = true;
            break;
        case CLI_OPT_FIRST_LOCAL:
            certificate = true;
            break;
        default:
            return cli_bad_option("info", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind < argc)
        return cli_usage_error("info", CLI_EXIT_USAGE, "unexpected argument `%s`", argv[optind]);
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    if (cli_call(c, "GET", "/v1/info", NULL, &info, &err) < 0) {
        cli_error_print(&err);
        cli_error_free(&err);
        return CLI_EXIT_FAILURE;
    }
    if (as_json)
        return cli_print_json(info) < 0 ? CLI_EXIT_FAILURE : 0;
    if (certificate) {
        const char *pem =
            json_string_value(json_object_get(json_object_get(info, "tls"), "certificate"));
        if (!pem || !*pem) {
            fprintf(stderr, "sbx: the daemon has no certificate for tls tunnels\n");
            return CLI_EXIT_FAILURE;
        }
        fputs(pem, stdout);
        return 0;
    }
    limits = json_object_get(info, "limits");
    counts = json_object_get(info, "counts");
    line("Host:", cli_client_name(c));
    line("Version:", cli_str(info, "version"));
    line("Cgroup mode:", cli_str(info, "cgroup_mode"));
    {
        double t = json_number_value(json_object_get(info, "started_at"));
        _cleanup_free_ char *when = cli_fmt_time(t);
        _cleanup_free_ char *up = cli_fmt_duration((double)time(NULL) - t);
        _cleanup_free_ char *s = cli_strdupf("%s (up %s)", when, up);
        line("Started:", s);
    }
    {
        _cleanup_free_ char *s =
            cli_strdupf("%lld running, %lld known, %lld created since start, %lld execs",
                        (long long)json_integer_value(json_object_get(counts, "sandboxes_running")),
                        (long long)json_integer_value(json_object_get(counts, "sandboxes_known")),
                        (long long)json_integer_value(json_object_get(counts, "sandboxes_created")),
                        (long long)json_integer_value(json_object_get(counts, "execs")));
        line("Sandboxes:", s);
    }
    {
        _cleanup_free_ char *body =
            cli_fmt_bytes((uint64_t)json_integer_value(json_object_get(limits, "max_body")));
        _cleanup_free_ char *output =
            cli_fmt_bytes((uint64_t)json_integer_value(json_object_get(limits, "output_limit")));
        _cleanup_free_ char *s = cli_strdupf(
            "%lld sandboxes, %lld execs per sandbox, %lld connections, %s per body, %s of "
            "output kept per stream",
            (long long)json_integer_value(json_object_get(limits, "max_sandboxes")),
            (long long)json_integer_value(json_object_get(limits, "max_execs")),
            (long long)json_integer_value(json_object_get(limits, "max_connections")), body,
            output);
        line("Limits:", s);
    }
    {
        const char *fp = cli_str(json_object_get(info, "tls"), "sha256");
        _cleanup_free_ char *s = fp && *fp ? cli_strdupf("certificate sha256 %s", fp) : NULL;
        line("TLS tunnels:", s);
    }
    return 0;
}
