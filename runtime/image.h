/* image.h — reading the image store that sbx-mkimage writes:
 *   <state_dir>/images/<name>/config.json   {"layers":[...], "env":[...], "workdir", "entrypoint"}
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
};

/* Loads image `name` ([A-Za-z0-9._-]{1,128}) from state_dir. */
int sbx_image_load(const char *state_dir, const char *name, struct sbx_image **ret, sbx_error *err);
void sbx_image_free(struct sbx_image *img);

#endif
