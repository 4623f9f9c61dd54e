package main

import (
	"bytes"
	"encoding/json"
	"strings"
)

// parseCNIArgs splits "K=V;K2=V2" the way cnitool reads CNI_ARGS: every pair
// needs a non-empty key and value, and a value may itself contain '='.
func parseCNIArgs(s string) ([][2]string, error) {
	var pairs [][2]string
	for _, item := range strings.Split(s, ";") {
		kv := strings.SplitN(item, "=", 2)
		if len(kv) != 2 || kv[0] == "" || kv[1] == "" {
			return nil, usagef("invalid --cniargs pair %q", item)
		}
		pairs = append(pairs, [2]string{kv[0], kv[1]})
	}
	return pairs, nil
}

// parseCapArgs decodes the capability arguments; UseNumber keeps port numbers
// and the like as the runtime wrote them instead of turning them into floats.
func parseCapArgs(s string) (map[string]interface{}, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]interface{}
	if err := dec.Decode(&m); err != nil {
		return nil, usagef("--capargs is not a JSON object: %v", err)
	}
	if m == nil {
		return nil, usagef("--capargs must be a JSON object, got null")
	}
	return m, nil
}
