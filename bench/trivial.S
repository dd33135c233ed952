/* The startup benchmark's trivial guest: write one byte to the serial
 * port, then the exit status 0 to port 0xf4. The same bytes run in 64-bit
 * mode (vmm-stub: ELF entry, 64-bit boot protocol) and in 32-bit protected
 * mode (QEMU: the PVH entry note below), so both VMMs run the same guest.
 * Build: gcc -nostdlib -static -no-pie -Wl,-Ttext-segment=0x200000 -o trivial trivial.S */
    .code64
    .section .text
    .globl _start
_start:
    movw $0x3f8, %dx
    movb $'!', %al
    outb %al, %dx
    xorl %eax, %eax
    outb %al, $0xf4
1:  hlt
    jmp 1b

    /* XEN_ELFNOTE_PHYS32_ENTRY (18): QEMU's PVH boot enters here. */
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4, 4, 18
    .asciz "Xen"
    .long _start
