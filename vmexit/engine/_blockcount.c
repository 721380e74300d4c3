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
    uint32_t shown;     /* the size it was last shown to the code watch with (0: never) */
    uint32_t trap;      /* its first callback in bc_state.traps, plus one (0: none) */
};

typedef void (*block_fn)(void *uc, uint64_t pc, uint32_t size, void *user_data);

/* A callback at one block start (engine.trap_block), called only while *flag is set and EFLAGS has
 * all of `bits` when flag is not NULL; `next` is the block's next callback, plus one (0: the last). */
struct trap {
    block_fn fn;
    const int32_t *flag;
    const uint32_t *eflags;  /* EFLAGS in Unicorn's CPU state (IF is kept there, not computed lazily) */
    uint32_t bits;
    uint32_t next;
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
    block_fn watch;     /* the code watch: a block start not shown before, or with a new size (or NULL) */
    struct trap *traps;
    uint32_t ntraps;
    uint32_t cap;
    uint32_t shown0;    /* `shown` of a block at 0 (a table key of 0 marks an empty slot) */
    uint32_t pad2;
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
    free(s->traps);
    s->table = NULL;
    s->traps = NULL;
}

/* Add a callback at the block start `pc`, after those it has (they run in the order added). */
int bc_trap_add(struct bc_state *s, uint64_t pc, block_fn fn, const int32_t *flag, const uint32_t *eflags,
                uint32_t bits)
{
    struct entry *e;
    uint32_t *link;
    if (pc == 0)
        return -1;  /* not a table key: the caller hooks it through Unicorn */
    if (s->ntraps == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 64;
        struct trap *grown = realloc(s->traps, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        s->traps = grown;
        s->cap = cap;
    }
    e = bc_entry(s, pc, 0);
    if (e == NULL)
        return -1;
    link = &e->trap;
    while (*link)
        link = &s->traps[*link - 1].next;
    s->traps[s->ntraps] = (struct trap){fn, flag, eflags, bits, 0};
    *link = ++s->ntraps;
    return 0;
}

/* The code watch and the callbacks at `pc` (bc_block's first and last steps). Python may add
 * callbacks or entries meanwhile (moving both tables), so nothing is held across a call. */
static void show(void *uc, uint64_t pc, uint32_t size, struct bc_state *s)
{
    uint32_t *shown = &s->shown0;
    if (pc != 0) {
        struct entry *e = bc_entry(s, pc, size);
        if (e == NULL)
            return;
        shown = &e->shown;
    }
    if (*shown == size)
        return;
    *shown = size;
    s->watch(uc, pc, size, NULL);
}

static void call_traps(void *uc, uint64_t pc, uint32_t size, struct bc_state *s, uint32_t i)
{
    while (i) {
        struct trap t = s->traps[i - 1];
        if (t.flag == NULL || (*t.flag && (*t.eflags & t.bits) == t.bits))
            t.fn(uc, pc, size, NULL);
        i = s->traps[i - 1].next;
    }
}

/* UC_HOOK_BLOCK, on every block, the engine's only block hook: in this order, what three Unicorn
 * block hooks would do.
 * 1. The code watch (when set) sees a block start it has not seen, or not with this size.
 * 2. Counting. A block-counted block adds its count, unless it would cross the limit: then the run
 *    stops before it (before its first instruction: Unicorn checks for a stop right after block
 *    hooks), exhausted when the limit is reached exactly, else for Python to run the remainder
 *    counted one by one. A block counted one by one that has run hot_threshold times is reported
 *    (STOP_HOT) for Python to make it block-counted, or if it cannot be, to translate it without
 *    this hook. A stop skips step 3, as Unicorn skips the hooks after one that stopped the run; the
 *    block's hooks all run again when it is entered again.
 * 3. The block's callbacks (bc_trap_add), each only while its flag and EFLAGS bits say so: a check in
 *    C, so that the many block starts where Python would do nothing cost no call into it. */
void bc_block(void *uc, uint64_t pc, uint32_t size, struct bc_state *s)
{
    struct entry *e;
    s->block_n = 0;
    if (s->watch != NULL)
        show(uc, pc, size, s);
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
    } else if (e->state == NEW && e->size == size && ++e->hits >= s->hot_threshold && s->nhot < HOT_MAX) {
        s->hot[s->nhot++] = pc;
        if (s->reason == STOP_NONE)
            s->reason = STOP_HOT;
        s->stop_pc = pc;
        s->emu_stop(uc);
        return;
    }
    if (e->trap)
        call_traps(uc, pc, size, s, e->trap);
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
