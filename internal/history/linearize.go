package history

import (
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// register is the state of one key: a value, or absent.
type register struct {
	absent bool
	value  string
}

func (r register) String() string {
	if r.absent {
		return "absent"
	}
	return fmt.Sprintf("%q", r.value)
}

// input is what an operation asks of the register.
type input struct {
	kind  Kind
	value string // written
}

// registerModel is a key as the contract promises it, for writes that the
// cluster stamps: a linearizable register that starts absent.
var registerModel = porcupine.Model{
	Init: func() any { return register{absent: true} },
	Step: func(state, in, out any) (bool, any) {
		s, i := state.(register), in.(input)
		switch i.kind {
		case Write:
			return true, register{value: i.value}
		case Delete:
			return true, register{absent: true}
		}
		return out.(register) == s, s
	},
	Hash: func(state any) uint64 {
		s := state.(register)
		if s.absent {
			return 0
		}
		h := fnv.New64a()
		io.WriteString(h, s.value)
		return h.Sum64() | 1
	},
	DescribeOperation: func(in, out any) string {
		i := in.(input)
		switch i.kind {
		case Write:
			return fmt.Sprintf("write %q", i.value)
		case Delete:
			return "delete"
		}
		return fmt.Sprintf("read -> %v", out)
	},
	DescribeState: func(state any) string { return state.(register).String() },
	DescribeOperationMetadata: func(info any) string {
		op, ok := info.(*Op)
		if !ok {
			return ""
		}
		return fmt.Sprintf("client %d, %s, ts %d, client's ts %t, %s", op.Client, op.Outcome, op.Timestamp, op.ClientTimestamp, op.Note)
	},
}

// checkLinearizable checks one key with Porcupine. ops are sorted by Start
// and hold no failed read. A write or delete that failed or lost a race
// returns after every other operation: it may take effect at any time after
// it was sent, or never.
//
// Such a write whose value no read returned is left out: each one
// multiplies the linearizations Porcupine must try, and it changes nothing.
// A linearization without it is one with it placed last; one with it has
// no read between it and the next write or delete (no read returned its
// value), so without it, it is still legal.
func (v *Verdict) checkLinearizable(key string, ops []*Op, timeout time.Duration) {
	read := map[string]bool{}
	for _, op := range ops {
		if op.Kind == Read && op.Outcome == OK {
			read[op.Value] = true
		}
	}
	ops = slices.DeleteFunc(slices.Clone(ops), func(op *Op) bool {
		return op.Kind == Write && op.indeterminate() && !read[op.Value]
	})
	if len(ops) == 0 {
		v.Linearizable++
		return
	}
	t0 := ops[0].Start
	var end time.Duration
	for _, op := range ops {
		end = max(end, op.End.Sub(t0))
	}
	clients := map[int]int{} // Op.Client → zero-indexed lane
	for _, op := range ops {
		if _, ok := clients[op.Client]; !ok {
			clients[op.Client] = len(clients)
		}
	}
	history := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		ret := op.End.Sub(t0)
		if op.indeterminate() {
			ret = end + 1
		}
		history = append(history, porcupine.Operation{
			ClientId: clients[op.Client],
			Input:    input{kind: op.Kind, value: op.Value},
			Call:     int64(op.Start.Sub(t0)),
			Output:   outputOf(op),
			Return:   int64(ret),
			Metadata: op,
		})
	}
	result, info := porcupine.CheckOperationsVerbose(registerModel, history, timeout)
	switch result {
	case porcupine.Ok:
		v.Linearizable++
	case porcupine.Unknown:
		v.Unknown = append(v.Unknown, key)
	default:
		v.visuals[key] = func(w io.Writer) error { return porcupine.Visualize(registerModel, info, w) }
		v.report(NotLinearizable, key, "%s", v.stuck(ops, history, info))
	}
}

// outputOf is what a read answered, as the register model sees it: an
// absent answer carries no value, whatever body came with it.
func outputOf(op *Op) register {
	if op.Outcome == Absent {
		return register{absent: true}
	}
	return register{value: op.Value}
}

// stuck describes where the longest partial linearization Porcupine found
// stops: its last operations and the state they leave, then the operations
// that must come next (every one not linearized that was sent before the
// first of them returned), none of which the model accepts.
func (v *Verdict) stuck(ops []*Op, history []porcupine.Operation, info porcupine.LinearizationInfo) string {
	var longest []int
	for _, partition := range info.PartialLinearizations() {
		for _, lin := range partition {
			if len(lin) > len(longest) {
				longest = lin
			}
		}
	}
	done := make([]bool, len(ops))
	state := registerModel.Init()
	for _, id := range longest {
		done[id] = true
		_, state = registerModel.Step(state, history[id].Input, history[id].Output)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d operations linearized; the last of them:", len(longest), len(ops))
	for _, id := range longest[max(0, len(longest)-6):] {
		fmt.Fprintf(&b, "\n  %s", ops[id].format(v.t0))
	}
	fmt.Fprintf(&b, "\nleaving %v; none of these can come next:", state)
	firstReturn := int64(-1)
	for id, op := range history {
		if !done[id] && (firstReturn < 0 || op.Return < firstReturn) {
			firstReturn = op.Return
		}
	}
	var next []int
	for id, op := range history {
		if !done[id] && op.Call <= firstReturn {
			next = append(next, id)
		}
	}
	slices.SortFunc(next, func(a, b int) int { return ops[a].Start.Compare(ops[b].Start) })
	for i, id := range next {
		if i == 12 {
			fmt.Fprintf(&b, "\n  ... and %d more", len(next)-i)
			break
		}
		fmt.Fprintf(&b, "\n  %s", ops[id].format(v.t0))
		if op := ops[id]; op.Kind == Read && op.Outcome == OK {
			if w := writeOf(ops, op.Value); w != nil {
				fmt.Fprintf(&b, "\n    its value's write: %s", w.format(v.t0))
			}
		}
	}
	return b.String()
}
