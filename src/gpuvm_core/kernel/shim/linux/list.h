/* SPDX-License-Identifier: MIT */
/*
 * gpuvm_core kernel oracle: circular doubly linked lists with the kernel's
 * names and semantics (a head node links to the first and last entries;
 * an empty list's head points to itself). Written for this project.
 */
#ifndef ORACLE_SHIM_LIST_H
#define ORACLE_SHIM_LIST_H
#include <stdbool.h>
#include <stddef.h>
#include <linux/container_of.h>

struct list_head {
	struct list_head *next, *prev;
};

#define LIST_HEAD_INIT(name) { &(name), &(name) }
#define LIST_HEAD(name) struct list_head name = LIST_HEAD_INIT(name)

static inline void INIT_LIST_HEAD(struct list_head *h) { h->next = h; h->prev = h; }

static inline void oracle_list_link(struct list_head *n, struct list_head *before,
				    struct list_head *after)
{
	after->prev = n;
	n->next = after;
	n->prev = before;
	before->next = n;
}

static inline void list_add(struct list_head *n, struct list_head *h)
{
	oracle_list_link(n, h, h->next);
}

static inline void list_add_tail(struct list_head *n, struct list_head *h)
{
	oracle_list_link(n, h->prev, h);
}

static inline void oracle_list_unlink(struct list_head *e)
{
	e->next->prev = e->prev;
	e->prev->next = e->next;
}

static inline void list_del(struct list_head *e)
{
	oracle_list_unlink(e);
	e->next = NULL;
	e->prev = NULL;
}

static inline void list_del_init(struct list_head *e)
{
	oracle_list_unlink(e);
	INIT_LIST_HEAD(e);
}

static inline void list_move_tail(struct list_head *e, struct list_head *h)
{
	oracle_list_unlink(e);
	list_add_tail(e, h);
}

static inline bool list_empty(const struct list_head *h) { return h->next == h; }

static inline bool list_is_last(const struct list_head *e, const struct list_head *h)
{
	return e->next == h;
}

static inline void list_splice(const struct list_head *from, struct list_head *to)
{
	if (!list_empty(from)) {
		struct list_head *first = from->next, *last = from->prev, *at = to->next;

		first->prev = to;
		to->next = first;
		last->next = at;
		at->prev = last;
	}
}

#define list_entry(p, type, member) container_of(p, type, member)
#define list_first_entry(h, type, member) list_entry((h)->next, type, member)
#define list_last_entry(h, type, member) list_entry((h)->prev, type, member)
#define list_next_entry(e, member) list_entry((e)->member.next, typeof(*(e)), member)
#define list_prev_entry(e, member) list_entry((e)->member.prev, typeof(*(e)), member)
#define list_entry_is_head(e, h, member) (&(e)->member == (h))

#define list_for_each(p, h) for ((p) = (h)->next; (p) != (h); (p) = (p)->next)
#define list_for_each_safe(p, n, h) \
	for ((p) = (h)->next, (n) = (p)->next; (p) != (h); (p) = (n), (n) = (p)->next)
#define list_for_each_entry(e, h, member) \
	for ((e) = list_first_entry(h, typeof(*(e)), member); \
	     !list_entry_is_head(e, h, member); (e) = list_next_entry(e, member))
#define list_for_each_entry_reverse(e, h, member) \
	for ((e) = list_last_entry(h, typeof(*(e)), member); \
	     !list_entry_is_head(e, h, member); (e) = list_prev_entry(e, member))
#define list_for_each_entry_from(e, h, member) \
	for (; !list_entry_is_head(e, h, member); (e) = list_next_entry(e, member))
#define list_for_each_entry_from_reverse(e, h, member) \
	for (; !list_entry_is_head(e, h, member); (e) = list_prev_entry(e, member))
#define list_for_each_entry_safe(e, n, h, member) \
	for ((e) = list_first_entry(h, typeof(*(e)), member), \
	     (n) = list_next_entry(e, member); \
	     !list_entry_is_head(e, h, member); (e) = (n), (n) = list_next_entry(n, member))

#endif
