package coord

import "errors"

// quorumWait follows the answers of one request's replicas until the
// request has its quorum, or cannot get it.
//
// A replica that fails fast never got the request (ErrNotSent): its peer
// is marked down, or its address is in dial backoff. That saves waiting
// for a peer that is probably gone; but when the quorum can no longer be
// made without such replicas, they are sent the request again, forced past
// both (once each): a peer just back from a restart or a healed partition
// answers at once, and the request succeeds instead of failing on stale
// news.
type quorumWait struct {
	p       Placement
	need    Need
	ok      []bool // answered and counts toward the quorum
	waiting []bool // sent, not answered yet
	forced  []bool // sent again past health and backoff
	fast    []int  // failed fast, not sent again yet
	errs    []error
}

func newQuorumWait(p Placement, need Need) *quorumWait {
	n := len(p.Nodes)
	flags := make([]bool, 3*n)
	q := &quorumWait{p: p, need: need, ok: flags[:n:n], waiting: flags[n : 2*n : 2*n], forced: flags[2*n:]}
	for i := range q.waiting {
		q.waiting[i] = true
	}
	return q
}

// answered records replica i's answer: err nil counts toward the quorum.
func (q *quorumWait) answered(i int, err error) {
	q.waiting[i] = false
	switch {
	case err == nil:
		q.ok[i] = true
	case !q.forced[i] && errors.Is(err, ErrNotSent):
		q.fast = append(q.fast, i)
	default:
		q.errs = append(q.errs, err)
	}
}

// satisfied reports whether the answers so far make the quorum.
func (q *quorumWait) satisfied() bool { return q.p.Satisfied(q.ok, q.need) }

// resend returns the replicas to send the request again, forced: those
// that failed fast, once the quorum cannot be made without them.
func (q *quorumWait) resend() []int {
	if len(q.fast) == 0 {
		return nil
	}
	possible := make([]bool, len(q.ok))
	for i := range possible {
		possible[i] = q.ok[i] || q.waiting[i]
	}
	if q.p.Satisfied(possible, q.need) {
		return nil
	}
	again := q.fast
	q.fast = nil
	for _, i := range again {
		q.forced[i], q.waiting[i] = true, true
	}
	return again
}

// pending returns how many answers are still to come.
func (q *quorumWait) pending() int { return countTrue(q.waiting) }

// err returns why the quorum was not made.
func (q *quorumWait) err() error { return errors.Join(q.errs...) }

// countOK returns how many replicas answered successfully.
func (q *quorumWait) countOK() int { return countTrue(q.ok) }

func countTrue(b []bool) int {
	c := 0
	for _, v := range b {
		if v {
			c++
		}
	}
	return c
}
