package activate

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFetchWantsASuccessfulAnswer(t *testing.T) {
	status := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	r := &Remote{HTTP: srv.Client()}
	if err := r.Fetch(t.Context(), srv.URL); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503: err %v", err)
	}
	status = http.StatusOK
	if err := r.Fetch(t.Context(), srv.URL); err != nil {
		t.Errorf("200: %v", err)
	}
}
