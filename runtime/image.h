/* image.h — reading the image store that sbx-mkimage writes:
 *   <state_dir>/images/<name>/config.json   {"layers":[...], "env":[...], "workdir", "entrypoint",
 *                                            "user"}
 *   <state_dir>/layers/<layer-id>/           a read-only root filesystem tree
 * Used by the tools and tests; the daemon has its own store on the same layout. */
#ifndef SBX_IMAGE_H
#define SBX_IMAGE_H

#include "sbx.h"

struct sbx_image {
    char *name;
    char **layers;     /* absolute layer paths, top-most first, NULL-terminated */
    char **env;        /* "K=V", NULL-terminated */
    char *workdir;     /* never NULL */
    char **entrypoint; /* NULL-terminated, or NULL */
    char *user;        /* "NAME", "UID" or "UID:GID" the image's processes run as, or NULL */
    unsigned uid, gid; /* user resolved (the daemon's sbxd_image_load()); 0 without one */
};

/* Loads image `name` ([A-Za-z0-9._-]{1,128}) from state_dir. */
int sbx_image_load(const char *state_dir, const char *name, struct sbx_image **ret, sbx_error *err);
/* The same from the first of stores (NULL-terminated) that has it; each
 * layer from the first store that has layers/LAYER (a daemon's own built
 * images stack on the system's). */
int sbx_image_load_from(const char *const *stores, const char *name, struct sbx_image **ret,
                        sbx_error *err);
void sbx_image_free(struct sbx_image *img);

#endif
