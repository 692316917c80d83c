package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

var columns = []string{"direct", "tlsd", LimitedTLSD, SplitTLSD, "haproxy", "nginx", "tlsd, 1 routes", "tlsd, 10001 routes"}

// WriteTable prints the results as a Markdown table: the median of the runs and their
// range, then how the targets fare.
func WriteTable(w io.Writer, results []Result) {
	type key struct{ c, m string }
	var rows []key
	cells := map[key]map[string]Result{}
	notes := map[string]string{}
	for _, r := range results {
		k := key{r.Case, r.Metric}
		if cells[k] == nil {
			cells[k] = map[string]Result{}
			rows = append(rows, k)
		}
		cells[k][r.Server] = r
		if r.Note != "" {
			notes[r.Case+" ("+r.Server+")"] = r.Note
		}
	}
	var used []string
	for _, c := range columns {
		for _, k := range rows {
			if _, ok := cells[k][c]; ok && !slices.Contains(used, c) {
				used = append(used, c)
			}
		}
	}
	fmt.Fprintf(w, "| case | metric | %s |\n|---|---|%s\n", strings.Join(used, " | "), strings.Repeat("---|", len(used)))
	for _, k := range rows {
		fmt.Fprintf(w, "| %s | %s |", k.c, k.m)
		for _, c := range used {
			r, ok := cells[k][c]
			if !ok {
				fmt.Fprint(w, " |")
				continue
			}
			fmt.Fprintf(w, " %s |", cell(r))
		}
		fmt.Fprintln(w)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nNegotiated:")
		keys := make([]string, 0, len(notes))
		for k := range notes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "- %s: %s\n", k, notes[k])
		}
	}
	writeTargets(w, func(c, m, server string) float64 { return cells[key{c, m}][server].Median() })
}

func cell(r Result) string {
	if len(r.Values) == 1 {
		return format(r.Values[0])
	}
	return fmt.Sprintf("%s (%s–%s)", format(r.Median()), format(slices.Min(r.Values)), format(slices.Max(r.Values)))
}

func format(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// writeTargets checks the figures against the targets tlsd set itself.
func writeTargets(w io.Writer, get func(c, m, server string) float64) {
	line := func(name string, got float64, want string, ok bool) {
		mark := "missed"
		if ok {
			mark = "met"
		}
		fmt.Fprintf(w, "- %s: %s (target %s) — %s\n", name, format(got), want, mark)
	}
	fmt.Fprintln(w, "\nTargets:")
	if hp := get("TLS 1.3 full handshakes", "hs/CPU-s", "haproxy"); hp > 0 {
		r := get("TLS 1.3 full handshakes", "hs/CPU-s", "tlsd") / hp
		line("full handshakes per CPU-s, tlsd / HAProxy", r, "≥ 1.4", r >= 1.4)
	}
	if d := get("passthrough bulk, 8 conn", "Gbit/s", "direct"); d > 0 && get("passthrough bulk, 8 conn", "Gbit/s", "tlsd") > 0 {
		r := get("passthrough bulk, 8 conn", "Gbit/s", "tlsd") / d
		line("passthrough throughput, 8 conns, tlsd / direct", r, "≥ 0.75", r >= 0.75)
	}
	if hp := get("passthrough bulk, 8 conn", "CPU-s per GB", "haproxy"); hp > 0 {
		r := get("passthrough bulk, 8 conn", "CPU-s per GB", "tlsd") / hp
		line("passthrough CPU per GB, tlsd / HAProxy", r, "≤ 0.5", r <= 0.5)
	}
	for _, p := range []string{"p50", "p99"} {
		if hp := get(pingCase, "added "+p+" µs", "haproxy"); hp != 0 { // measured: it may be below 0
			added := get(pingCase, "added "+p+" µs", "tlsd")
			line("added "+p+" latency over direct (same run), tlsd vs HAProxy, µs", added, fmt.Sprintf("≤ %s", format(hp)), added <= hp)
		}
	}
	if pt := get("idle RSS per connection, passthrough", "kB", "tlsd"); pt != 0 {
		line("idle RSS per passthrough connection, kB", pt, "≤ 8", pt <= 8)
	}
	if term := get("idle RSS per connection, terminated", "kB", "tlsd"); term != 0 {
		line("idle RSS per terminated connection, kB", term, "≤ 25", term <= 25)
	}
	for _, mode := range []string{"passthrough", "terminated"} {
		c := "idle RSS per connection, " + mode
		if plain, limited := get(c, "kB", "tlsd"), get(c, "kB", LimitedTLSD); plain != 0 && limited != 0 {
			line("idle RSS added by limits and timeouts, "+mode+", kB", limited-plain, "≤ 0.5", limited-plain <= 0.5)
		}
	}
	if plain := get(connRateCase, "conn/CPU-s", "tlsd"); plain > 0 {
		cost := 1 - get(connRateCase, "conn/CPU-s", LimitedTLSD)/plain
		line("connection rate cost of limits and timeouts", cost*100, "≤ 3 %", cost <= 0.03)
	}
	if plain := get("terminated bulk, 1 conn", "CPU-s per GB", "tlsd"); plain > 0 && get(reencryptCase, "CPU-s per GB", "tlsd") > 0 {
		fmt.Fprintf(w, "- CPU per GB of terminated bulk re-encrypted to a TLS upstream, over plain: tlsd %s",
			format(get(reencryptCase, "CPU-s per GB", "tlsd")/plain))
		if hp := get("terminated bulk, 1 conn", "CPU-s per GB", "haproxy"); hp > 0 {
			fmt.Fprintf(w, ", HAProxy %s", format(get(reencryptCase, "CPU-s per GB", "haproxy")/hp))
		}
		fmt.Fprintln(w, " (the second encryption's cost)")
	}
	if term := get("terminated bulk, 1 conn", "CPU-s per GB", "tlsd"); term > 0 && get("passthrough bulk, 1 conn", "CPU-s per GB", SplitTLSD) > 0 {
		r := get("passthrough bulk, 1 conn", "CPU-s per GB", SplitTLSD) / term
		line("tunnel CPU-s per GB (edge + agent, passthrough bulk) / terminated bulk CPU-s per GB (tlsd run)", r, "≤ 2", r <= 2)
	}
	if first := get(firstRequestCase, "ms", "tlsd"); first > 0 {
		want, ok := "≤ 1", first <= 1
		if hp := get(firstRequestCase, "ms", "haproxy"); hp > 0 {
			want, ok = fmt.Sprintf("≤ 1 and ≤ HAProxy's %s", format(hp)), first <= 1 && first <= hp
		}
		line("first request after the handshake, client without TCP_NODELAY, ms", first, want, ok)
	}
	if one := get("passthrough new connections by routes", "conn/CPU-s", "tlsd, 1 routes"); one > 0 {
		cost := 1 - get("passthrough new connections by routes", "conn/CPU-s", "tlsd, 10001 routes")/one
		line("connection rate cost of 10,000 routes", cost*100, "≤ 5 %", cost <= 0.05)
	}
}
