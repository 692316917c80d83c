package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat (100 on Linux).
const clockTicks = 100

// processTree is pid and its descendants (nginx's master and workers).
func processTree(pid int) []int {
	out := []int{pid}
	entries, _ := os.ReadDir("/proc")
	parents := map[int]int{}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fields := statFields(child); len(fields) > 3 {
			ppid, _ := strconv.Atoi(fields[3])
			parents[child] = ppid
		}
	}
	for changed := true; changed; {
		changed = false
		for child, ppid := range parents {
			if contains(out, ppid) && !contains(out, child) {
				out = append(out, child)
				changed = true
			}
		}
	}
	return out
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// statFields are /proc/PID/stat's fields, with the command name (which may hold
// spaces) collapsed to one field.
func statFields(pid int) []string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return append([]string{"pid", "comm"}, strings.Fields(s[i+1:])...)
}

// CPUSeconds is the user+system CPU time the processes have used.
func CPUSeconds(pids []int) float64 {
	var ticks int64
	for _, p := range pids {
		f := statFields(p)
		if len(f) > 14 {
			u, _ := strconv.ParseInt(f[13], 10, 64)
			s, _ := strconv.ParseInt(f[14], 10, 64)
			ticks += u + s
		}
	}
	return float64(ticks) / clockTicks
}

// RSSKB is the resident memory of the processes, in kB.
func RSSKB(pids []int) int {
	total := 0
	for _, p := range pids {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
				total += n
			}
		}
	}
	return total
}
