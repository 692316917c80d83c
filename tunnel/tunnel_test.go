package tunnel

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestReportBounds: a report round-trips; one too large is refused, and what it holds is
// bounded in items and in text, since the edge shows it.
func TestReportBounds(t *testing.T) {
	var buf bytes.Buffer
	want := Report{Certificates: []ReportedCertificate{{Endpoint: "ag", NotAfter: time.Unix(1e9, 0).UTC(), Serial: "1f", Source: "file"}}}
	if err := WriteReport(&buf, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadReport(&buf)
	if err != nil || len(got.Certificates) != 1 || got.Certificates[0] != want.Certificates[0] {
		t.Fatalf("round trip: %+v, %v", got, err)
	}

	long := strings.Repeat("<b>", 1000)
	many := Report{}
	for range MaxReportItems + 5 {
		many.Certificates = append(many.Certificates, ReportedCertificate{Endpoint: "e", Error: long[:600]})
	}
	buf.Reset()
	WriteReport(&buf, many)
	got, err = ReadReport(&buf)
	if err != nil || len(got.Certificates) != MaxReportItems || len(got.Certificates[0].Error) > maxReportText+3 {
		t.Fatalf("bounded report: %d items, %v", len(got.Certificates), err)
	}
	if _, err := ReadReport(strings.NewReader(`{"certificates":[` + strings.Repeat(`{"endpoint":"x"},`, 40000) + `{}]}`)); err == nil {
		t.Error("a report over the size bound was read")
	}
	if _, err := ReadReport(strings.NewReader("not json")); err == nil {
		t.Error("a report that is not JSON was read")
	}
}

// TestReportHeader: a report request names no endpoint and is still a header.
func TestReportHeader(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHeader(&buf, Header{Report: true}); err != nil {
		t.Fatal(err)
	}
	if h, err := ReadHeader(&buf); err != nil || !h.Report {
		t.Errorf("report header: %+v, %v", h, err)
	}
	buf.Reset()
	WriteHeader(&buf, Header{})
	if _, err := ReadHeader(&buf); err == nil {
		t.Error("a header naming nothing was read")
	}
}
