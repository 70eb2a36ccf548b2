/* secrets.c — named sets of environment variables.
 *
 * STATE/secrets/NAME.json ({"name", "created_at", "updated_at", "env"}),
 * mode 0600 in a directory of mode 0700: readable by root only.  No call
 * returns a variable: the list and a secret's own GET give its name and
 * times.  A create's or an exec's `secrets` adds their variables to
 * the environment given to the monitor (spec.json, the exec request: both
 * root's only); nothing here logs them. */
#include "sandboxd.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SECRET_MAX_VARS  256
#define SECRET_MAX_BYTES (64 * 1024)

static void secret_path(struct sbxd *d, const char *name, char *buf, size_t size)
{
    if (name)
        snprintf(buf, size, "%s/secrets/%s.json", d->cfg.state_dir, name);
    else
        snprintf(buf, size, "%s/secrets", d->cfg.state_dir);
}

static bool valid_secret_name(const char *name)
{
    return sbxd_valid_name(name) && name[0] != '.';
}

static bool valid_var(const char *k)
{
    if (!k || !*k || (*k >= '0' && *k <= '9'))
        return false;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
              *k == '_'))
            return false;
    return true;
}

static json_t *secret_load(struct sbxd *d, const char *name)
{
    char path[PATH_MAX];
    json_t *s;

    if (!valid_secret_name(name))
        return NULL;
    secret_path(d, name, path, sizeof(path));
    s = sbxd_read_json(path);
    if (s && !json_is_object(json_object_get(s, "env"))) {
        json_decref(s);
        return NULL;
    }
    return s;
}

/* What the API shows: the name and times, never a variable. */
static json_t *secret_view(json_t *s)
{
    return json_pack("{s:O,s:O,s:O}", "name", json_object_get(s, "name"), "created_at",
                     json_object_get(s, "created_at"), "updated_at",
                     json_object_get(s, "updated_at"));
}

static void put_secret(struct sbxd *d, sbxd_req *req, const char *name)
{
    json_t *body = sbxd_req_json(req), *env, *old, *s, *v;
    char path[PATH_MAX];
    const char *k;
    size_t bytes = 0;
    bool created;
    double now = sbxd_now();
    int r;

    if (!body)
        return;
    env = json_object_get(body, "env");
    if (!json_is_object(env) || json_object_size(body) != 1) {
        sbxd_reply_error(req, 400, "invalid_argument", "body must be {\"env\": {\"K\": \"V\"}}");
        goto out;
    }
    if (json_object_size(env) > SECRET_MAX_VARS) {
        sbxd_reply_error(req, 400, "invalid_argument", "field `env`: more than %d variables",
                         SECRET_MAX_VARS);
        goto out;
    }
    json_object_foreach(env, k, v)
    {
        if (!valid_var(k) || !json_is_string(v) ||
            memchr(json_string_value(v), '\0', json_string_length(v))) {
            sbxd_reply_error(req, 400, "invalid_argument",
                             "field `env`: each key a variable name, each value a string "
                             "without NUL (`%.64s`)",
                             k);
            goto out;
        }
        bytes += strlen(k) + json_string_length(v) + 2;
    }
    if (bytes > SECRET_MAX_BYTES) {
        sbxd_reply_error(req, 413, "too_large", "field `env`: more than %d bytes",
                         SECRET_MAX_BYTES);
        goto out;
    }
    secret_path(d, NULL, path, sizeof(path));
    if ((r = sbxd_mkdir_p(path, 0700)) < 0 || chmod(path, 0700) < 0) {
        sbxd_reply_error(req, 500, "internal", "cannot make the secrets directory: %s",
                         strerror(r < 0 ? -r : errno));
        goto out;
    }
    old = secret_load(d, name);
    created = !old;
    s = json_pack("{s:s,s:o,s:f,s:O}", "name", name, "created_at",
                  old ? json_incref(json_object_get(old, "created_at")) : json_real(now),
                  "updated_at", now, "env", env);
    json_decref(old);
    secret_path(d, name, path, sizeof(path));
    /* 0600, written whole and durable: a secret is there or not. */
    r = s ? sbxd_write_json(path, s, true) : -ENOMEM;
    if (r < 0) {
        sbxd_reply_error(req, 500, "internal", "cannot store secret `%s`: %s", name, strerror(-r));
    } else {
        sbxd_log(NULL, "secret %s: %s (%zu variables)", name, created ? "created" : "replaced",
                 json_object_size(env));
        sbxd_reply_json(req, created ? 201 : 200, secret_view(s));
    }
    json_decref(s);
out:
    json_decref(body);
}

static void list_secrets(struct sbxd *d, sbxd_req *req)
{
    char dir[PATH_MAX];
    json_t *list = json_array();
    struct dirent *de;
    DIR *dh;

    secret_path(d, NULL, dir, sizeof(dir));
    if ((dh = opendir(dir))) {
        while ((de = readdir(dh))) {
            size_t n = strlen(de->d_name);
            char name[64];
            json_t *s;
            if (n <= 5 || n - 5 >= sizeof(name) || strcmp(de->d_name + n - 5, ".json"))
                continue;
            memcpy(name, de->d_name, n - 5);
            name[n - 5] = '\0';
            if ((s = secret_load(d, name))) {
                json_array_append_new(list, secret_view(s));
                json_decref(s);
            }
        }
        closedir(dh);
    }
    sbxd_reply_json(req, 200, json_pack("{s:o}", "secrets", list));
}

void sbxd_secrets_handle(struct sbxd *d, sbxd_req *req, char segs[][128], size_t n)
{
    const char *method = sbxd_req_method(req);
    char path[PATH_MAX];
    json_t *s;

    if (n == 2) {
        if (!strcmp(method, "GET"))
            list_secrets(d, req);
        else
            sbxd_reply_error(req, 405, "invalid_argument", "method %s not allowed here", method);
        return;
    }
    if (n != 3) {
        sbxd_reply_error(req, 404, "not_found", "no such endpoint");
        return;
    }
    if (!valid_secret_name(segs[2])) {
        sbxd_reply_error(
            req, 400, "invalid_argument",
            "secret name `%.64s` must match [A-Za-z0-9._-]{1,63}, not starting with `.`", segs[2]);
        return;
    }
    if (!strcmp(method, "PUT")) {
        put_secret(d, req, segs[2]);
        return;
    }
    if (!(s = secret_load(d, segs[2]))) {
        sbxd_reply_error(req, 404, "not_found", "no secret `%s`", segs[2]);
        return;
    }
    if (!strcmp(method, "GET")) {
        sbxd_reply_json(req, 200, secret_view(s));
    } else if (!strcmp(method, "DELETE")) {
        secret_path(d, segs[2], path, sizeof(path));
        if (unlink(path) < 0)
            sbxd_reply_error(req, 500, "internal", "cannot delete secret `%s`: %s", segs[2],
                             strerror(errno));
        else {
            sbxd_log(NULL, "secret %s: deleted", segs[2]);
            sbxd_reply_empty(req, 204);
        }
    } else {
        sbxd_reply_error(req, 405, "invalid_argument", "method %s not allowed here", method);
    }
    json_decref(s);
}

bool sbxd_secrets_env(struct sbxd *d, sbxd_req *req, json_t *names, json_t *env)
{
    json_t *name;
    size_t i;

    if (!names || json_is_null(names))
        return true;
    if (!json_is_array(names) || json_array_size(names) > 64) {
        sbxd_reply_error(req, 400, "invalid_argument",
                         "field `secrets` must be an array of at most 64 secret names");
        return false;
    }
    json_array_foreach(names, i, name)
    {
        const char *k;
        json_t *s, *v;

        if (!json_is_string(name) || !valid_secret_name(json_string_value(name))) {
            sbxd_reply_error(req, 400, "invalid_argument",
                             "field `secrets`: each must be a secret's name");
            return false;
        }
        if (!(s = secret_load(d, json_string_value(name)))) {
            sbxd_reply_error(req, 404, "not_found", "field `secrets`: no secret `%s`",
                             json_string_value(name));
            return false;
        }
        json_object_foreach(json_object_get(s, "env"), k, v)
        {
            char *kv;
            if (asprintf(&kv, "%s=%s", k, json_string_value(v)) >= 0) {
                json_array_append_new(env, json_string(kv));
                free(kv);
            }
        }
        json_decref(s);
    }
    return true;
}
