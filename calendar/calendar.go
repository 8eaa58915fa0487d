// Package calendar checks systemd calendar expressions, the values of a
// timer's OnCalendar= (systemd.time(7)), so that a bad schedule is refused
// where the timer is written rather than on the node, where systemd would
// log the error and never start the timer.
package calendar

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// shorthands are systemd's named schedules; they may be followed by a
// time zone only.
var shorthands = []string{"minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly", "semiannually"}

var weekdays = []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}

// Check reports whether s is a calendar expression systemd accepts:
// a shorthand such as daily, or [WEEKDAYS] [[YEAR-]MONTH-DAY] [HH:MM[:SS]]
// [TIMEZONE], each part a list of values, ranges (a..b) and repetitions
// (a/n). The error says which part is wrong.
func Check(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	tokens := strings.Split(s, " ")
	for _, t := range tokens {
		if t == "" {
			return errors.New("parts must be separated by single spaces, with none before or after")
		}
	}
	if len(tokens) > 1 && isZone(tokens[len(tokens)-1]) {
		tokens = tokens[:len(tokens)-1]
	}
	if len(tokens) == 1 {
		for _, sh := range shorthands {
			if strings.EqualFold(tokens[0], sh) {
				return nil
			}
		}
	}
	if isLetter(tokens[0][0]) {
		if err := checkWeekdays(tokens[0]); err != nil {
			return err
		}
		tokens = tokens[1:]
	}
	seenDate, seenTime := false, false
	for _, t := range tokens {
		switch {
		case strings.Contains(t, ":") && !seenTime:
			if err := checkTime(t); err != nil {
				return err
			}
			seenTime = true
		case strings.ContainsAny(t, "-~") && !seenDate && !seenTime:
			if err := checkDate(t); err != nil {
				return err
			}
			seenDate = true
		default:
			return fmt.Errorf("%q is neither a weekday, a date (YYYY-MM-DD), a time (HH:MM[:SS]) nor a time zone, in that order", t)
		}
	}
	return nil
}

func isLetter(b byte) bool { return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') }

// isZone reports whether t names a time zone: UTC, or a zone of the tz
// database that this machine knows.
func isZone(t string) bool {
	if strings.EqualFold(t, "UTC") {
		return true
	}
	if !strings.Contains(t, "/") {
		return false
	}
	_, err := time.LoadLocation(t)
	return err == nil
}

func weekday(name string) (int, bool) {
	for i, d := range weekdays {
		if strings.EqualFold(name, d) || strings.EqualFold(name, d[:3]) {
			return i, true
		}
	}
	return 0, false
}

// checkWeekdays reads Mon, Mon..Fri or Sat,Sun (ranges ascending).
func checkWeekdays(t string) error {
	for _, item := range strings.Split(t, ",") {
		from, to, isRange := strings.Cut(item, "..")
		a, ok := weekday(from)
		if !ok {
			return fmt.Errorf("%q is not a schedule name (%s) nor a weekday", from, strings.Join(shorthands, ", "))
		}
		if isRange {
			b, ok := weekday(to)
			if !ok {
				return fmt.Errorf("%q is not a weekday", to)
			}
			if b < a {
				return fmt.Errorf("weekday range %q runs backwards", item)
			}
		}
	}
	return nil
}

// checkDate reads [YEAR-]MONTH-DAY; "~" before the day counts from the
// end of the month.
func checkDate(t string) error {
	var parts []string
	rest := t
	if i := strings.Index(rest, "~"); i >= 0 {
		if strings.Contains(rest[i+1:], "-") || strings.Contains(rest[i+1:], "~") {
			return fmt.Errorf("date %q: the day after ~ must come last", t)
		}
		parts = append(strings.Split(rest[:i], "-"), rest[i+1:])
	} else {
		parts = strings.Split(rest, "-")
	}
	type field struct {
		name     string
		min, max int
	}
	fields := []field{{"month", 1, 12}, {"day", 1, 31}}
	switch len(parts) {
	case 2:
	case 3:
		fields = append([]field{{"year", 0, 2199}}, fields...)
	default:
		return fmt.Errorf("date %q: want MONTH-DAY or YEAR-MONTH-DAY", t)
	}
	for i, f := range fields {
		if err := checkValues(parts[i], f.min, f.max, false); err != nil {
			return fmt.Errorf("date %q: %s %w", t, f.name, err)
		}
		if f.name == "year" && parts[i] != "*" {
			if err := checkYear(parts[i]); err != nil {
				return fmt.Errorf("date %q: year %w", t, err)
			}
		}
	}
	return nil
}

// checkYear: systemd reads two-digit years as 1970-2069 and takes years
// from 1970 to 2199.
func checkYear(s string) error {
	for _, item := range strings.Split(s, ",") {
		item, _, _ = strings.Cut(item, "/")
		for _, v := range strings.Split(item, "..") {
			n, _ := strconv.Atoi(v)
			if n >= 100 && n < 1970 {
				return fmt.Errorf("%q: want 1970 to 2199, or two digits", v)
			}
		}
	}
	return nil
}

// checkTime reads HH:MM or HH:MM:SS; seconds may have a fraction.
func checkTime(t string) error {
	parts := strings.Split(t, ":")
	if len(parts) != 2 && len(parts) != 3 {
		return fmt.Errorf("time %q: want HH:MM or HH:MM:SS", t)
	}
	if err := checkValues(parts[0], 0, 23, false); err != nil {
		return fmt.Errorf("time %q: hour %w", t, err)
	}
	if err := checkValues(parts[1], 0, 59, false); err != nil {
		return fmt.Errorf("time %q: minute %w", t, err)
	}
	if len(parts) == 3 {
		if err := checkValues(parts[2], 0, 59, true); err != nil {
			return fmt.Errorf("time %q: second %w", t, err)
		}
	}
	return nil
}

// checkValues reads "*" or a comma list of v, a..b, v/n and a..b/n.
func checkValues(s string, min, max int, fraction bool) error {
	if s == "*" {
		return nil
	}
	num := func(v string) (float64, error) {
		if v == "" || strings.ContainsAny(v, "+-eE") {
			return 0, fmt.Errorf("%q is not a number", v)
		}
		if !fraction && strings.Contains(v, ".") {
			return 0, fmt.Errorf("%q is not a whole number", v)
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", v)
		}
		return n, nil
	}
	for _, item := range strings.Split(s, ",") {
		item, rep, hasRep := strings.Cut(item, "/")
		from, to, isRange := strings.Cut(item, "..")
		a, err := num(from)
		if err != nil {
			return err
		}
		b := a
		if isRange {
			if b, err = num(to); err != nil {
				return err
			}
			if b < a {
				return fmt.Errorf("range %q runs backwards", item)
			}
		}
		if a < float64(min) || b >= float64(max)+1 {
			return fmt.Errorf("%q: want %d to %d", item, min, max)
		}
		if hasRep {
			n, err := num(rep)
			if err != nil {
				return err
			}
			if n <= 0 {
				return fmt.Errorf("repetition %q must be positive", rep)
			}
		}
	}
	return nil
}
