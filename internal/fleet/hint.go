package fleet

// firstOr is the first of list, or def when it is empty.
func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}
