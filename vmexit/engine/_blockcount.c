/* _blockcount.c -- exact instruction counting for vmexit's Unicorn engine at block granularity.
 *
 * Why: Unicorn's count mode (emu_start with a count) calls a hook before every instruction, which
 * halves the speed of store-heavy guest code. Here a block hook adds a whole block's instruction count
 * at once, for the blocks translated without per-instruction calls ("block-counted" blocks); every
 * other block is translated with a per-instruction code hook that counts one by one, exactly as count
 * mode does. Python (blockcount.py) decides which blocks become block-counted (hot ones without
 * trapped instructions) and retranslates them with the code hook switched off for that translation.
 *
 * Our own code; compiled on first use with the system cc into a per-user cache (never committed as a
 * binary). Without a compiler vmexit counts with Unicorn's count mode, with identical results.
 *
 * The functions below are Unicorn hook callbacks (UC_HOOK_BLOCK and UC_HOOK_CODE):
 *     void cb(uc_engine *uc, uint64_t address, uint32_t size, void *user_data)
 * user_data is the struct bc_state Python allocated; uc_emu_stop comes in as a function pointer, so
 * this file needs no Unicorn header or library to build.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int (*emu_stop_fn)(void *uc);

enum { STOP_NONE = 0, STOP_CROSS = 1, STOP_HOT = 2 };
enum { NEW = 0, COUNTED = 1, NEVER = 2 };  /* entry state */
#define HOT_MAX 64

struct entry {
    uint64_t pc;        /* block start, 0 = empty slot (no block starts at 0 in a multiboot guest) */
    uint32_t size;      /* bytes of the block as translated */
    uint32_t n;         /* its instructions when block-counted (state COUNTED), else 0 */
    uint32_t hits;      /* executions while counted one by one (state NEW) */
    uint32_t state;
};

struct bc_state {
    uint64_t count;     /* instructions started in this slice (the current one included, in a hook) */
    uint64_t limit;     /* the slice ends once count would exceed this */
    uint64_t block_n;   /* instructions added by the block hook for the running block (0: one by one) */
    uint64_t block_pc;  /* that block's start */
    uint32_t reason;    /* why the helper stopped the run (STOP_*); Python clears it */
    uint32_t hot_threshold;
    uint64_t stop_pc;   /* the block the run was stopped before (STOP_CROSS, STOP_HOT) */
    emu_stop_fn emu_stop;
    struct entry *table;
    uint64_t mask;      /* table slots - 1 (a power of two minus one) */
    uint64_t used;
    uint32_t nhot;
    uint32_t pad;
    uint64_t hot[HOT_MAX];
};

static uint64_t slot_of(const struct bc_state *s, uint64_t pc)
{
    return (pc * 0x9E3779B97F4A7C15ull >> 20) & s->mask;
}

/* The entry of `pc`, or the empty slot where it would go. */
static struct entry *find(struct bc_state *s, uint64_t pc)
{
    uint64_t i = slot_of(s, pc);
    while (s->table[i].pc != pc && s->table[i].pc != 0)
        i = (i + 1) & s->mask;
    return &s->table[i];
}

static int grow(struct bc_state *s)
{
    uint64_t old_slots = s->mask + 1, slots = old_slots * 2;
    struct entry *old = s->table, *fresh = calloc(slots, sizeof *fresh);
    if (fresh == NULL)
        return -1;
    s->table = fresh;
    s->mask = slots - 1;
    for (uint64_t i = 0; i < old_slots; i++) {
        if (old[i].pc != 0)
            *find(s, old[i].pc) = old[i];
    }
    free(old);
    return 0;
}

/* The entry of `pc`, made (state NEW) when absent; NULL if memory ran out. */
struct entry *bc_entry(struct bc_state *s, uint64_t pc, uint32_t size)
{
    struct entry *e = find(s, pc);
    if (e->pc == pc)
        return e;
    if ((s->used + 1) * 2 > s->mask + 1) {
        if (grow(s) != 0)
            return NULL;
        e = find(s, pc);
    }
    memset(e, 0, sizeof *e);
    e->pc = pc;
    e->size = size;
    s->used++;
    return e;
}

int bc_init(struct bc_state *s, uint64_t slots)
{
    s->table = calloc(slots, sizeof *s->table);
    s->mask = slots - 1;
    return s->table == NULL ? -1 : 0;
}

void bc_free(struct bc_state *s)
{
    free(s->table);
    s->table = NULL;
}

/* UC_HOOK_BLOCK, on every block. A block-counted block adds its count, unless it would cross the
 * limit: then the run stops before it (before its first instruction: Unicorn checks for a stop right
 * after block hooks), exhausted when the limit is reached exactly, else for Python to run the
 * remainder counted one by one. A block counted one by one that has run hot_threshold times is
 * reported (STOP_HOT) for Python to make it block-counted, or if it cannot be, to translate it without
 * this hook. */
void bc_block(void *uc, uint64_t pc, uint32_t size, struct bc_state *s)
{
    struct entry *e;
    s->block_n = 0;
    if (pc == 0)
        return;
    e = bc_entry(s, pc, size);
    if (e == NULL)
        return;
    if (e->state == COUNTED && e->size == size) {
        if (s->count + e->n > s->limit) {
            /* Unicorn may drop a stop (a hook that wrote EIP in the same round restarts the loop):
             * then this block hook runs again, and must decide the same way */
            if (s->count >= s->limit)
                s->count = s->limit + 1;  /* as count mode leaves it: one past the limit */
            else
                s->reason = STOP_CROSS;
            s->stop_pc = pc;
            s->emu_stop(uc);
            return;
        }
        s->count += e->n;
        s->block_n = e->n;
        s->block_pc = pc;
        return;
    }
    if (e->size == size && ++e->hits >= s->hot_threshold && s->nhot < HOT_MAX) {
        s->hot[s->nhot++] = pc;
        if (s->reason == STOP_NONE)
            s->reason = STOP_HOT;
        s->stop_pc = pc;
        s->emu_stop(uc);
    }
}

/* UC_HOOK_CODE, on every instruction of a block counted one by one: what count mode does. The first
 * instruction after a block-counted block ends that block (a block without the block hook may follow:
 * see BlockCounting._count_blocks_of). If it is that block's own first instruction, the block hook
 * counted it as a whole though it runs one by one -- it was translated again since (the guest rewrote
 * it, the translation cache was flushed): take that back and forget the block's count. */
void bc_code(void *uc, uint64_t address, uint32_t size, struct bc_state *s)
{
    (void)size;
    if (s->block_n) {
        if (address == s->block_pc) {
            struct entry *e = find(s, s->block_pc);
            s->count -= s->block_n;
            if (e->pc == s->block_pc) {
                e->state = NEW;
                e->n = 0;
                e->hits = 0;
            }
        }
        s->block_n = 0;
    }
    if (++s->count > s->limit)
        s->emu_stop(uc);
}

/* A block callback called only while a flag is set and EFLAGS has the given bits (the code scanner's
 * look after a popf: only while an interrupt waits, only if IF came back on), so that the many block
 * starts where it would do nothing cost no call into Python. */
struct gate {
    const int32_t *flag;
    const uint32_t *eflags;  /* EFLAGS in Unicorn's CPU state (IF is kept there, not computed lazily) */
    uint32_t bits;
    uint32_t pad;
    void (*fn)(void *uc, uint64_t pc, uint32_t size, void *user_data);
};

void bc_gated(void *uc, uint64_t pc, uint32_t size, struct gate *g)
{
    if (*g->flag && (*g->eflags & g->bits) == g->bits)
        g->fn(uc, pc, size, NULL);
}

/* MMIO callbacks in front of Python's: an access from inside a block-counted block is taken back
 * (STOP_MMIO: the run stops during the access, Unicorn restarts the instruction, and Python counts
 * that block one by one from then on, where the access is made again); any other goes to Python. */
enum { STOP_MMIO = 3 };

struct mmio {
    struct bc_state *s;
    uint64_t (*read)(void *uc, uint64_t offset, unsigned size, void *user_data);
    void (*write)(void *uc, uint64_t offset, unsigned size, uint64_t value, void *user_data);
};

static int taken_back(void *uc, struct bc_state *s)
{
    if (!s->block_n)
        return 0;
    s->reason = STOP_MMIO;
    s->emu_stop(uc);
    return 1;
}

uint64_t bc_mmio_read(void *uc, uint64_t offset, unsigned size, struct mmio *m)
{
    return taken_back(uc, m->s) ? 0 : m->read(uc, offset, size, NULL);
}

void bc_mmio_write(void *uc, uint64_t offset, unsigned size, uint64_t value, struct mmio *m)
{
    if (!taken_back(uc, m->s))
        m->write(uc, offset, size, value, NULL);
}
