package iid

import (
	"errors"
	"fmt"
)

// maxBERDepth bounds the nesting a BER value may have; a PKCS#7 signature
// nests about ten deep.
const maxBERDepth = 32

// berToDER re-encodes a BER value as DER so encoding/asn1 can read it. AWS
// serves its PKCS#7 signatures with indefinite lengths and a constructed
// OCTET STRING for the content; DER has neither. Only what DER needs is
// changed: indefinite lengths become definite ones and constructed OCTET
// STRINGs become primitive ones. Anything after the value is refused.
func berToDER(ber []byte) ([]byte, error) {
	out, rest, err := berValue(ber, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d bytes follow the signature's ASN.1 value", len(rest))
	}
	return out, nil
}

// berValue converts one TLV and returns the bytes after it.
func berValue(b []byte, depth int) (der, rest []byte, err error) {
	if depth > maxBERDepth {
		return nil, nil, errors.New("ASN.1 value nested too deep")
	}
	if len(b) < 2 {
		return nil, nil, errors.New("ASN.1 value truncated")
	}
	tagLen := 1
	if b[0]&0x1f == 0x1f {
		// High tag number: base-128 digits, the last without bit 8.
		for {
			if tagLen >= len(b) || tagLen > 4 {
				return nil, nil, errors.New("ASN.1 tag truncated or too long")
			}
			c := b[tagLen]
			tagLen++
			if c&0x80 == 0 {
				break
			}
		}
	}
	tag := b[:tagLen]
	constructed := b[0]&0x20 != 0
	b = b[tagLen:]
	if len(b) == 0 {
		return nil, nil, errors.New("ASN.1 length missing")
	}
	l := int(b[0])
	b = b[1:]
	if l == 0x80 {
		// Indefinite length: children until the end-of-contents octets.
		if !constructed {
			return nil, nil, errors.New("indefinite length on a primitive ASN.1 value")
		}
		var children [][]byte
		for {
			if len(b) < 2 {
				return nil, nil, errors.New("ASN.1 end-of-contents missing")
			}
			if b[0] == 0 && b[1] == 0 {
				b = b[2:]
				break
			}
			var child []byte
			child, b, err = berValue(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			children = append(children, child)
		}
		return joinConstructed(tag, children), b, nil
	}
	if l > 0x80 {
		n := l & 0x7f
		if n > 4 || n > len(b) {
			return nil, nil, errors.New("ASN.1 length too long or truncated")
		}
		l = 0
		for _, c := range b[:n] {
			l = l<<8 | int(c)
		}
		b = b[n:]
	}
	if l < 0 || l > len(b) {
		return nil, nil, errors.New("ASN.1 value longer than its input")
	}
	content, rest := b[:l], b[l:]
	if !constructed {
		return encodeTLV(tag, content), rest, nil
	}
	var children [][]byte
	for len(content) > 0 {
		var child []byte
		child, content, err = berValue(content, depth+1)
		if err != nil {
			return nil, nil, err
		}
		children = append(children, child)
	}
	return joinConstructed(tag, children), rest, nil
}

// joinConstructed encodes a constructed value from its converted children.
// A constructed OCTET STRING becomes the primitive one DER requires.
func joinConstructed(tag []byte, children [][]byte) []byte {
	if len(tag) == 1 && tag[0] == 0x24 {
		var data []byte
		for _, c := range children {
			_, body := splitTLV(c)
			data = append(data, body...)
		}
		return encodeTLV([]byte{0x04}, data)
	}
	var body []byte
	for _, c := range children {
		body = append(body, c...)
	}
	return encodeTLV(tag, body)
}

// splitTLV returns the header and content of a DER value berValue made.
func splitTLV(der []byte) (header, content []byte) {
	i := 1
	if der[0]&0x1f == 0x1f {
		for der[i]&0x80 != 0 {
			i++
		}
		i++
	}
	if der[i] < 0x80 {
		return der[:i+1], der[i+1:]
	}
	n := int(der[i] & 0x7f)
	return der[:i+1+n], der[i+1+n:]
}

// encodeTLV writes a tag, a definite DER length and the content.
func encodeTLV(tag, content []byte) []byte {
	out := append([]byte{}, tag...)
	switch l := len(content); {
	case l < 0x80:
		out = append(out, byte(l))
	case l <= 0xff:
		out = append(out, 0x81, byte(l))
	case l <= 0xffff:
		out = append(out, 0x82, byte(l>>8), byte(l))
	case l <= 0xffffff:
		out = append(out, 0x83, byte(l>>16), byte(l>>8), byte(l))
	default:
		out = append(out, 0x84, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
	}
	return append(out, content...)
}
