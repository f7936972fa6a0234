package main

// What a run measured, from one outcome per request. Nothing here does I/O.

import (
	"math"
	"slices"
	"strconv"
	"time"
)

// Outcome of one request. Latency runs from the request's intended send time in the
// open loop (so time spent queued behind a slow answer counts) and from its send in
// the closed loop; 0 means no answer came.
type Outcome struct {
	Latency time.Duration
	Code    int32
	Late    time.Duration // intended time to the write of its bytes
}

// Summary is the one JSON object a run prints. The latency and rate fields have the
// names of benchmarks/loadgen.py's Result, so benchmarks/report.py judges both alike.
type Summary struct {
	Transport      string         `json:"transport"`
	Mode           string         `json:"mode"` // open, max (closed loop), once
	ConnPerRequest bool           `json:"conn_per_request"`
	Connections    int            `json:"connections"` // TCP connections, UDP sockets, or in flight
	OfferedRate    float64        `json:"offered_rate"`
	Duration       float64        `json:"duration"`
	Sent           int            `json:"sent"`
	Answered       int            `json:"answered"` // within the timeout, any response code
	Lost           int            `json:"lost"`     // no answer within the timeout
	Errors         int            `json:"errors"`   // lost, or answered with a code not in -ok
	Codes          map[string]int `json:"codes"`
	AchievedRate   float64        `json:"achieved_rate"` // answers with an -ok code a second
	P50            float64        `json:"p50_ms"`
	P90            float64        `json:"p90_ms"`
	P99            float64        `json:"p99_ms"`
	P999           float64        `json:"p999_ms"`
	Max            float64        `json:"max_ms"`
	LateP99        float64        `json:"send_late_p99_ms"`
	LateMax        float64        `json:"send_late_max_ms"`
	Stray          int            `json:"stray"` // packets for no request of this run
	Failures       map[string]int `json:"failures,omitempty"`
}

// Summarise counts the outcomes; a request lost (or answered after timeout) enters
// the percentiles at timeout, a lower bound of its latency, as loadgen.py does.
func Summarise(outcomes []Outcome, ok map[int32]bool, timeout time.Duration, duration float64) Summary {
	s := Summary{Sent: len(outcomes), Duration: duration, Codes: map[string]int{}}
	latencies := make([]float64, 0, len(outcomes))
	late := make([]float64, 0, len(outcomes))
	good := 0
	for _, o := range outcomes {
		if o.Latency <= 0 || o.Latency > timeout {
			s.Lost++
			latencies = append(latencies, ms(timeout))
			continue
		}
		s.Answered++
		s.Codes[strconv.Itoa(int(o.Code))]++
		if ok[o.Code] {
			good++
		}
		latencies = append(latencies, ms(o.Latency))
		late = append(late, ms(o.Late))
	}
	s.Errors = s.Sent - good
	if duration > 0 {
		s.AchievedRate = round(float64(good)/duration, 1)
	}
	slices.Sort(latencies)
	slices.Sort(late)
	s.P50 = Percentile(latencies, 50)
	s.P90 = Percentile(latencies, 90)
	s.P99 = Percentile(latencies, 99)
	s.P999 = Percentile(latencies, 99.9)
	s.Max = Percentile(latencies, 100)
	s.LateP99 = Percentile(late, 99)
	s.LateMax = Percentile(late, 100)
	return s
}

// Percentile of sorted values by nearest rank: the smallest value with at least q% of
// the values at or below it (loadgen.percentile's definition); 0 for no values.
func Percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(round(q/100*float64(len(sorted)), 9)))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 {
	return round(float64(d)/1e6, 3)
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}
