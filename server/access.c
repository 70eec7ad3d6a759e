/* Which SDC may do what here: the table of (SDC, volume) -> read-only or
 * read-write, built from each map as it is installed, and its lookups.
 * Pure: no I/O, no clock (tests/unit/test_access.c).
 *
 * The check runs on every client request, so a request pays one binary
 * search at most, and usually none: dispatch.c keeps on each connection the
 * answer for the last volume it asked about, valid while the map version
 * stays the one it was computed for. */
#include <stdlib.h>
#include <string.h>

#include "sds.h"

static int entry_cmp(const void *a, const void *b)
{
    const struct access_entry *x = a, *y = b;
    if (x->sdc_id != y->sdc_id)
        return x->sdc_id < y->sdc_id ? -1 : 1;
    if (x->volume_id != y->volume_id)
        return x->volume_id < y->volume_id ? -1 : 1;
    return 0;
}

int access_build(struct access_table *t, const Cairn__ClusterMap *m)
{
    struct access_entry *e = NULL;
    size_t n = 0;
    if (m && m->n_mappings) {
        e = malloc(m->n_mappings * sizeof(*e));
        if (!e)
            return -1;
        for (size_t i = 0; i < m->n_mappings; i++) {
            const Cairn__Mapping *mp = m->mappings[i];
            /* a mapping to a pending SDC (made before it was pending, or
             * by a state machine that did not check) grants nothing */
            const Cairn__Sdc *c = NULL;
            for (size_t j = 0; j < m->n_sdcs && !c; j++)
                if (m->sdcs[j]->id == mp->sdc_id)
                    c = m->sdcs[j];
            if (!c || c->pending)
                continue;
            e[n].sdc_id = mp->sdc_id;
            e[n].volume_id = mp->volume_id;
            e[n].read_only = mp->read_only;
            n++;
        }
        qsort(e, n, sizeof(*e), entry_cmp);
    }
    free(t->e);
    t->e = e;
    t->n = n;
    return 0;
}

void access_free(struct access_table *t)
{
    free(t->e);
    t->e = NULL;
    t->n = 0;
}

uint32_t access_sdc(const Cairn__ClusterMap *m, const char *name)
{
    for (size_t i = 0; m && i < m->n_sdcs; i++)
        if (!strcmp(m->sdcs[i]->name, name))
            return m->sdcs[i]->pending ? 0 : m->sdcs[i]->id;
    return 0;
}

enum access_mode access_lookup(const struct access_table *t, uint32_t sdc_id, uint64_t volume_id)
{
    if (!sdc_id || !t->n)
        return ACCESS_NONE;
    struct access_entry key = {.sdc_id = sdc_id, .volume_id = volume_id};
    const struct access_entry *e = bsearch(&key, t->e, t->n, sizeof(*t->e), entry_cmp);
    return !e ? ACCESS_NONE : e->read_only ? ACCESS_RO : ACCESS_RW;
}

int access_allows(enum access_mode mode, uint16_t type)
{
    switch (type) {
    case FT_IO_READ:
    case FT_IO_STAT:
    case FT_IO_FLUSH: return mode != ACCESS_NONE;
    default: return mode == ACCESS_RW; /* WRITE, TRIM, ZERO */
    }
}
