#include "capacity.h"

#include <stdlib.h>
#include <string.h>

#include "cmap.h"

uint32_t capacity_fault_domain(const Cairn__ClusterMap *m, const Cairn__Sds *sds)
{
    if (sds->fault_set[0])
        for (size_t i = 0; i < m->n_fault_sets; i++)
            if (!strcmp(m->fault_sets[i]->name, sds->fault_set))
                return 0x80000000u | m->fault_sets[i]->id;
    return sds->id;
}

int capacity_device_placeable(const Cairn__Device *d, const Cairn__Pool *p)
{
    return d->pool_id == p->id && !d->failed && !d->removing;
}

uint64_t capacity_pool_raw(const Cairn__ClusterMap *m, const Cairn__Pool *p)
{
    /* Every working device counts from the moment it is added: new capacity
     * is usable at once, while rebalance moves copies onto it. */
    uint64_t sum = 0;
    for (size_t i = 0; i < m->n_devices; i++)
        if (capacity_device_placeable(m->devices[i], p))
            sum += m->devices[i]->capacity;
    return sum;
}

static int cmp_u64_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

uint64_t capacity_pool_usable(const Cairn__ClusterMap *m, const Cairn__Pool *p)
{
    size_t n = 0;
    uint32_t *fs = calloc(m->n_devices + 1, sizeof(uint32_t));
    uint64_t *w = calloc(m->n_devices + 1, sizeof(uint64_t));
    if (!fs || !w)
        abort();
    for (size_t i = 0; i < m->n_devices; i++) {
        Cairn__Device *d = m->devices[i];
        Cairn__Sds *o = cmap_sds(m, d->sds_id);
        if (!capacity_device_placeable(d, p) || !o)
            continue;
        uint32_t f = capacity_fault_domain(m, o);
        size_t j;
        for (j = 0; j < n && fs[j] != f; j++)
            ;
        if (j == n)
            fs[n++] = f;
        w[j] += d->capacity;
    }
    qsort(w, n, sizeof(uint64_t), cmp_u64_desc);
    uint64_t rest = 0, usable = 0;
    for (size_t i = 0; i < n; i++)
        rest += w[i];
    for (size_t k = 0; k < p->copies && k < n; k++) {
        uint64_t d = rest / (p->copies - k);
        if (w[k] <= d) {
            usable = d;
            break;
        }
        rest -= w[k];
    }
    free(fs);
    free(w);
    return usable;
}

uint64_t capacity_pool_provisioned(const Cairn__ClusterMap *m, const Cairn__Pool *p, int thick_only)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < m->n_volumes; i++) {
        Cairn__Volume *v = m->volumes[i];
        if (v->pool_id == p->id && (!thick_only || v->thick))
            sum += v->size;
    }
    return sum;
}
