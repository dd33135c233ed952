/* The density benchmark's idle guest: bench/trivial.S without the exit:
 * write "!\n" to the serial port (the host's "VM is up" signal), then
 * halt forever, as an idle app VM waits for work. Build like trivial.S. */
    .code64
    .section .text
    .globl _start
_start:
    movw $0x3f8, %dx
    movb $'!', %al
    outb %al, %dx
    movb $'\n', %al   /* the stub's console flushes at a newline */
    outb %al, %dx
1:  hlt
    jmp 1b

    /* XEN_ELFNOTE_PHYS32_ENTRY (18): QEMU's PVH boot enters here. */
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4, 4, 18
    .asciz "Xen"
    .long _start
