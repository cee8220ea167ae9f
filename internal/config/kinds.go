package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// textTypes are the field types decoded from text, with what to write.
// go-toml hands a non-string value to UnmarshalText without the key or line
// of the value, and stores an integer straight into a Duration (as
// nanoseconds), so checkValueKinds looks at these values first.
var textTypes = map[reflect.Type]string{
	reflect.TypeFor[Duration](): `must be a string such as "30s", "5m" or "2h"`,
	reflect.TypeFor[Size]():     `must be a number of bytes or a string such as "25MiB"`,
	reflect.TypeFor[HostPort](): `must be a string such as "127.0.0.1:2525"`,
	reflect.TypeFor[Prefix]():   `must be a string such as "192.0.2.0/24"`,
}

// textField is a key whose value is decoded from text.
type textField struct {
	typ   reflect.Type
	slice bool // an array of such values
}

// textFields maps the dotted keys of Config whose values are decoded from
// text to their types.
func textFields(t reflect.Type, prefix string, out map[string]textField) map[string]textField {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		switch ft := f.Type; {
		case textTypes[ft] != "":
			out[key] = textField{typ: ft}
		case ft.Kind() == reflect.Slice && textTypes[ft.Elem()] != "":
			out[key] = textField{typ: ft.Elem(), slice: true}
		case ft.Kind() == reflect.Struct:
			textFields(ft, key+".", out)
		}
	}
	return out
}

// checkValueKinds reports, with its file, line and key, a value of the
// wrong TOML kind for a field decoded from text: anything but a string, or
// for a Size a non-negative integer. Syntax errors are left to the decoder.
func checkValueKinds(name string, data []byte) error {
	fields := textFields(reflect.TypeFor[Config](), "", map[string]textField{})
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyOf(e)
		case unstable.KeyValue:
			if err := checkKeyValue(name, &p, fields, table, e); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkKeyValue(name string, p *unstable.Parser, fields map[string]textField, table []string, kv *unstable.Node) error {
	key := append(slices.Clone(table), keyOf(kv)...)
	dotted := strings.Join(key, ".")
	v := kv.Value()
	if v.Kind == unstable.InlineTable {
		if !fieldsUnder(fields, dotted) {
			return nil // nothing to check below: do not walk deep nesting
		}
		for it := v.Children(); it.Next(); {
			if err := checkKeyValue(name, p, fields, key, it.Node()); err != nil {
				return err
			}
		}
		return nil
	}
	f, ok := fields[dotted]
	if !ok {
		return nil
	}
	values := []*unstable.Node{v}
	switch {
	case f.slice && v.Kind == unstable.Array:
		values = values[:0]
		for it := v.Children(); it.Next(); {
			values = append(values, it.Node())
		}
	case f.slice || v.Kind == unstable.Array:
		return nil // the decoder reports the mismatch with its line
	}
	// The line of the key; Shape scans from the start of the file, so only
	// for an error.
	line := func() int {
		it := kv.Key()
		it.Next()
		return p.Shape(it.Node().Raw).Start.Line
	}
	for _, n := range values {
		switch {
		case n.Kind == unstable.String:
		case n.Kind == unstable.Integer && f.typ == reflect.TypeFor[Size]():
			if strings.HasPrefix(string(n.Data), "-") {
				return fmt.Errorf("%s:%d: %s: must not be negative", name, line(), dotted)
			}
		default:
			return fmt.Errorf("%s:%d: %s: %s", name, line(), dotted, textTypes[f.typ])
		}
	}
	return nil
}

// fieldsUnder reports whether some field decoded from text lies in the
// table named by the dotted key.
func fieldsUnder(fields map[string]textField, dotted string) bool {
	for k := range fields {
		if strings.HasPrefix(k, dotted+".") {
			return true
		}
	}
	return false
}

// keyOf returns the parts of the key of a table or key-value expression.
func keyOf(e *unstable.Node) []string {
	var parts []string
	for it := e.Key(); it.Next(); {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}
