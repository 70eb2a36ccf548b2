/* tag.c — sbx tag: a sandbox's tags, shown, set (K=V), removed (K-). */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx tag [OPTIONS] SANDBOX [K=V | K-]...\n"
               "Without K=V arguments, shows the sandbox's tags.  K=V sets a tag, K- removes\n"
               "one (like kubectl label); the others stay unless --replace is given.\n\n"
               "      --replace      the given tags replace all of them\n"
               "      --json         print the tags as a JSON object\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

int cmd_tag(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"replace", no_argument, NULL, CLI_OPT_FIRST_LOCAL},
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    _cleanup_free_ char *id = NULL, *path = NULL;
    _cleanup_json_ json_t *answer = NULL, *set = json_object(), *unset = json_array();
    bool replace = false, as_json = false;
    struct cli_error err = {0};
    struct cli_client *c;
    json_t *tags, *v;
    const char *k;
    size_t i;
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
        case CLI_OPT_FIRST_LOCAL:
            replace = true;
            break;
        case CLI_OPT_JSON:
            as_json = true;
            break;
        default:
            return cli_bad_option("tag", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind >= argc)
        return cli_usage_error("tag", CLI_EXIT_USAGE, "no SANDBOX given");
    for (int a = optind + 1; a < argc; a++) {
        size_t n = strlen(argv[a]);
        if (n > 1 && argv[a][n - 1] == '-' && !strchr(argv[a], '=')) {
            json_array_append_new(unset, json_stringn(argv[a], n - 1));
            continue;
        }
        if (!cli_parse_kv("tag", "tag", argv[a], false, set))
            return CLI_EXIT_USAGE;
    }
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    if (cli_resolve_sandbox(c, argv[optind], &id, &err) < 0)
        goto fail;
    path = cli_strdupf("/v1/sandboxes/%s/tags", id);
    if (cli_call(c, "GET", path, NULL, &answer, &err) < 0)
        goto fail;
    tags = json_object_get(answer, "tags");
    if (!json_is_object(tags)) {
        cli_error_set(&err, 0, "sandboxd's answer for the tags of %s has no tags", id);
        goto fail;
    }
    if (argc - optind > 1 || replace) {
        /* The API replaces the whole set: read, change, write. */
        _cleanup_json_ json_t *body = NULL, *changed = replace ? json_object() : json_copy(tags);
        json_object_update(changed, set);
        json_array_foreach(unset, i, v) json_object_del(changed, json_string_value(v));
        body = json_pack("{s:O}", "tags", changed);
        json_decref(answer);
        answer = NULL;
        if (cli_call(c, "PUT", path, body, &answer, &err) < 0)
            goto fail;
        tags = json_object_get(answer, "tags");
        if (!as_json)
            return 0;
    }
    if (as_json)
        return cli_print_json(tags) < 0 ? CLI_EXIT_FAILURE : 0;
    json_object_foreach(tags, k, v) printf("%s=%s\n", k, json_string_value(v) ?: "");
    return 0;
fail:
    cli_error_print(&err);
    cli_error_free(&err);
    return CLI_EXIT_FAILURE;
}
