package merge

// maxEdits bounds the Myers search. Past it the rest of the two files is
// taken as replaced wholesale: a merge then finds more conflicts than a
// minimal diff would, never a wrong result, and memory stays at about
// maxEdits² ints.
const maxEdits = 2000

// match returns, for each line of a, the index of the line of b it is kept
// as in a shortest edit script from a to b, or -1 for a deleted line. The
// matched indexes increase.
func match(a, b []string) []int {
	m := make([]int, len(a))
	for i := range m {
		m[i] = -1
	}
	// Common prefix and suffix first: most edits are small.
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		m[pre] = pre
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		m[len(a)-1-suf] = len(b) - 1 - suf
		suf++
	}
	myers(a[pre:len(a)-suf], b[pre:len(b)-suf], func(i, j int) { m[pre+i] = pre + j })
	return m
}

// myers calls keep(i, j) for each pair of equal lines a[i] == b[j] of a
// shortest edit script (Myers, "An O(ND) Difference Algorithm"), keeping
// the V array of every step for the way back.
func myers(a, b []string, keep func(i, j int)) {
	n, m := len(a), len(b)
	if n == 0 || m == 0 {
		return
	}
	var trace [][]int // trace[d][k+d]: furthest x on diagonal k after d edits
	at := func(d, k int) int { return trace[d][k+d] }
	for d := 0; d <= n+m && d <= maxEdits; d++ {
		v := make([]int, 2*d+1)
		for k := -d; k <= d; k += 2 {
			var x int
			switch {
			case d == 0:
				x = 0
			case k == -d || k != d && at(d-1, k-1) < at(d-1, k+1):
				x = at(d-1, k+1) // down: a line of b inserted
			default:
				x = at(d-1, k-1) + 1 // right: a line of a deleted
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[k+d] = x
			if x >= n && y >= m {
				trace = append(trace, v)
				backtrack(trace, n, m, a, keep)
				return
			}
		}
		trace = append(trace, v)
	}
	// Too many edits: no line is kept.
}

func backtrack(trace [][]int, x, y int, a []string, keep func(i, j int)) {
	for d := len(trace) - 1; d > 0; d-- {
		k := x - y
		var pk int
		if k == -d || k != d && trace[d-1][k-1+d-1] < trace[d-1][k+1+d-1] {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := trace[d-1][pk+d-1]
		py := px - pk
		for x > px && y > py {
			x, y = x-1, y-1
			keep(x, y)
		}
		x, y = px, py
	}
	for x > 0 && y > 0 {
		x, y = x-1, y-1
		keep(x, y)
	}
}

// Stat counts the lines added and deleted from a to b.
func Stat(a, b []byte) (added, deleted int) {
	la, lb := split(a), split(b)
	kept := 0
	for _, j := range match(la, lb) {
		if j >= 0 {
			kept++
		}
	}
	return len(lb) - kept, len(la) - kept
}
