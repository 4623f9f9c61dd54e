package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/containernetworking/cni/pkg/types"
)

// errorLinePrefix starts the machine-readable last line of stderr. Only
// errors carrying a CNI error code get one; everything else (libcni's own
// refusals such as CHECK on a 0.3.1 list) has no code to report.
const errorLinePrefix = "CNI_ERROR "

func reportFailure(stderr io.Writer, verb string, err error) {
	fmt.Fprintf(stderr, "cnidriver: %s: %v\n", verb, err)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) {
		return
	}
	// A dedicated struct rather than types.Error: details must always be
	// present so consumers can tell "empty" from "absent" the same way.
	line, mErr := json.Marshal(struct {
		Code    uint   `json:"code"`
		Msg     string `json:"msg"`
		Details string `json:"details"`
	}{cniErr.Code, cniErr.Msg, cniErr.Details})
	if mErr != nil {
		fmt.Fprintf(stderr, "cnidriver: encoding error line: %v\n", mErr)
		return
	}
	fmt.Fprintf(stderr, "%s%s\n", errorLinePrefix, line)
}
